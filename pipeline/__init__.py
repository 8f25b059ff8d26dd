"""The application: one sub-package per verb (data, metrics < extract, evaluate < infer, report < train < grid)."""
