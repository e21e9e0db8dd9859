"""Importers: other people's scenario formats translated into the farm's bundles.

    agentbench_os/   AgentBench's OS-interaction tasks (public benchmark), task by task,
                     with a reason for every task that cannot be translated faithfully
"""
