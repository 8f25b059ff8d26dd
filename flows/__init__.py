"""Prefect wiring only: each task calls one pipeline function; flows compose tasks and pick the task runner."""
