"""Task forms as a service: the form of a task for a screen or a client, and submitting it.

The web page, the REST API and the CLI all complete tasks through `submit`, so a task with a
form accepts only data that passes its definition, whoever sends it. Nothing reaches the
engine (and so nothing is stored) until the submission is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.forms.definition import FormDefinition, Option
from taktflow.forms.lookups import LookupRegistry
from taktflow.forms.submission import Signer, prepare, validate

#: Longest free-text note a task without a form takes (web page comment box).
MAX_NOTE = 4000


class TaskForms:
    def __init__(self, engine: Any, accounts: Any) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lookups = LookupRegistry()
        self.lookups.register("users", self._users)

    def _users(self, role: str | None) -> list[Option]:
        return [
            Option(u["username"], u.get("display_name") or u["username"])
            for u in self.accounts.users()
            if u.get("active", True) and (role is None or role in u.get("roles", []))
        ]

    # ------------------------------------------------------------------ reading
    def form_of(self, task: Mapping[str, Any]) -> FormDefinition | None:
        """The task's form, or None when it names none; Conflict when it is not deployed."""
        name = task.get("form")
        if not name:
            return None
        return self._deployed(name, f"task {task['task_id']}")

    def _deployed(self, name: str, user: str) -> FormDefinition:
        try:
            return self.engine.form(name)
        except NotFound:
            raise Conflict(
                f"{user} uses form {name!r}, which is not deployed: an engineer deploys "
                f"forms/{name}.yaml (`taktflow deploy forms/`)"
            ) from None

    def view(self, task_id: str, *, html: bool) -> dict[str, Any]:
        """The task, its instance's data and its form prepared with that data (or None)."""
        task = self.engine.task(task_id)
        data = self.engine.instance(task["instance_id"], history=False)["data"]
        form = self.form_of(task)
        prepared = prepare(form, data, self.lookups, html=html) if form is not None else None
        return {"task": task, "data": data, "form": prepared}

    def preview(self, form: FormDefinition, data: Mapping[str, Any]) -> dict[str, Any]:
        """A form with sample data, as an operator would see it (the engineer's preview)."""
        return prepare(form, data, self.lookups, html=True)

    # ------------------------------------------------------------------ submitting
    def check(
        self,
        form_name: str,
        raw: Mapping[str, Any],
        data: Mapping[str, Any],
        *,
        actor: str | None,
        strict: bool,
    ) -> dict[str, Any]:
        """Validate `raw` against the deployed form `form_name` shown with `data`, outside any
        task (a form that starts something): the values, or ValidationFailed per field. Such a
        form cannot be signed: there is no task whose data a signature would cover."""
        form = self._deployed(form_name, "this page")
        signer = Signer(
            username=actor or "unknown",
            display_name=None,
            check_password=lambda _password: False,
            now=self.engine.clock.now,
        )
        return validate(form, raw, data, signer=signer, lookups=self.lookups, strict=strict)

    def prepared(self, form_name: str, data: Mapping[str, Any], *, html: bool) -> dict[str, Any]:
        """The deployed form `form_name` prepared with `data` (Conflict when not deployed)."""
        form = self._deployed(form_name, "this page")
        return prepare(form, data, self.lookups, html=html)

    def submit(
        self,
        task_id: str,
        raw: Mapping[str, Any],
        *,
        actor: str | None,
        check_password: Callable[[str], bool] | None,
        strict: bool,
        display_name: str | None = None,
        history: bool = True,
    ) -> dict[str, Any]:
        """Validate `raw` against the task's form and complete the task; the instance view.

        Without a form the data is taken as it is. `check_password` is None where no password
        can be asked for (the CLI): a form with a signature is then refused.
        """
        task = self.engine.task(task_id)
        form = self.form_of(task)
        if form is None:
            return self.engine.complete_task(task_id, dict(raw), actor=actor, history=history)
        signatures = [f.name for f in form.fields if f.type == "signature"]
        if check_password is None and signatures:
            raise ValidationFailed(
                f"form {form.name!r} is signed ({', '.join(signatures)}): complete it on the "
                "task page or through the API, where the signer enters their password",
                details={"fields": {name: "a signature needs the signer" for name in signatures}},
            )
        data = self.engine.instance(task["instance_id"], history=False)["data"]
        signer = Signer(
            username=actor or "unknown",
            display_name=display_name,
            check_password=check_password or (lambda _password: False),
            now=self.engine.clock.now,
        )
        values = validate(form, raw, data, signer=signer, lookups=self.lookups, strict=strict)
        return self.engine.complete_task(task_id, values, actor=actor, history=history)
