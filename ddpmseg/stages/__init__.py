"""One module per rule file of the workflow (``workflow/rules/<stage>.smk``), holding the keyword-only
functions its rules run over paths and settings; ``workflow/scripts/<rule>.py`` calls them through
:func:`ddpmseg.stages.runner.run_stage`, which passes the rule's named inputs, outputs and params by name.

Method logic lives in the package's method modules; a stage reads its inputs, calls them and writes
its outputs.
"""
