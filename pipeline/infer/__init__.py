"""New images and outside checkpoints: predict on files, import DeCLIP checkpoints."""
