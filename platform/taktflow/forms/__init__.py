"""Forms: definitions in forms/*.yaml rendered as operator screens and checked on the server.

`definition` reads and checks a form file (with lines), `submission` resolves a form for one
task and validates what was submitted, `lookups` holds named option lists. See docs/forms.md.
"""
