"""AgentBench OS-interaction tasks as farm bundles (see translate.py for how, and README.md)."""
