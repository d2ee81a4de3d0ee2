"""What the notebooks call: one step per cell (experiments), the papermill runner, the report, plots and widgets."""
