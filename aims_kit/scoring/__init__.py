"""How answers are judged: metrics, bootstrap statistics, probes, intent judges, and scoring a model on a labelled split."""
