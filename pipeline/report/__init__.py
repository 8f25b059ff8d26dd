"""Reading results: model selection on validation, summaries, robustness tables, figures and the report page."""
