"""DeCLIP's plateau schedule on scripted validation curves."""
from declip.pipeline.train.schedule import PlateauSchedule


def run(curve, **kw):
    s = PlateauSchedule(**kw)
    decisions = [s.step(v) for v in curve]
    return s, decisions


def test_lr_drops_after_patience_and_stops_after_fourth_plateau():
    s, d = run([10.0] * 40, patience=5)
    lrs = [x.lr for x in d]
    # epoch 0 sets the reference, 5 non-improving epochs → drop at epoch 5; restart: reference at 6, drop at 11 ...
    assert [i for i, x in enumerate(d) if x.lr_dropped] == [5, 11, 17]
    assert abs(lrs[5] - 1e-4) < 1e-12 and abs(lrs[11] - 1e-5) < 1e-13 and abs(lrs[17] - 1e-6) < 1e-14
    assert d[23].stop and not any(x.stop for x in d[:23]) and "min_lr" in d[23].reason
    assert s.best_epoch == 0


def test_margin_first_0_001_then_0_002():
    # +0.0015 over the reference counts as an improvement under the first margin (0.001) ...
    _, d = run([50.0, 50.0, 50.0015, 50.0015], patience=2)
    assert not any(x.lr_dropped for x in d)
    # ... but not after an lr drop, when the margin is 0.002
    _, d2 = run([50.0, 50.0, 50.0, 50.0, 50.0015, 50.0015], patience=2)
    assert d2[2].lr_dropped and abs(d2[2].lr - 1e-4) < 1e-12
    assert d2[5].lr_dropped and abs(d2[5].lr - 1e-5) < 1e-13


def test_best_is_strict_and_not_rolled_back():
    _, d = run([5.0, 5.0, 7.0, 6.0, 7.0])
    assert [x.new_best for x in d] == [True, False, True, False, False]


def test_max_epochs_and_state_roundtrip():
    s, d = run([1.0, 2.0, 3.0], max_epochs=3)
    assert d[-1].stop and "max_epochs" in d[-1].reason
    s2 = PlateauSchedule.from_state(s.state_dict())
    assert s2 == s


def test_a_gain_of_exactly_the_margin_counts_as_improvement():
    # declip-method §5.4: "an improvement only if IoU ≥ best + 0.001" (≥, not >)
    _, d = run([10.0, 10.0 + 0.001, 10.0 + 0.001 + 0.001], patience=1)
    assert not any(x.lr_dropped for x in d)
    _, d2 = run([10.0, 10.0 + 0.0009], patience=1)  # and just below it does not
    assert d2[1].lr_dropped
