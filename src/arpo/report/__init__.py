"""Reports: plots of training runs and evaluations, written as Markdown and HTML pages."""
