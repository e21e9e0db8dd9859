"""The vocabulary every role of the farm speaks: schemas, taxonomy, settings, the artifact store."""
