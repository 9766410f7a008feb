"""The CLI glue, one module per verb: each ``run(args)`` turns parsed arguments into calls of the rooms
below (config, data, engine, inference, export, bench, report) and prints what a user reads. This is the
only layer that reads argv, files and configs together; nothing below imports it (tests/test_layers.py)."""
