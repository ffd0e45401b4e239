"""The workflow engine: deploy, run and persist BPMN processes on SpiffWorkflow."""
