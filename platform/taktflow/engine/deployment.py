"""Deployment: process and decision versions, and the process model queries.

A mixin of WorkflowEngine (it uses the engine's units of work, serializer, actions and
compilers); kept apart because deploying shares nothing with running instances but the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.engine import models as m
from taktflow.engine.definitions import (
    CONNECTOR,
    FORM,
    DefinitionParser,
    ParsedDecision,
    ParsedProcess,
    SourceFile,
    read_paths,
    sources_from_text,
)
from taktflow.errors import DefinitionError, DefinitionProblem, NotFound

if TYPE_CHECKING:
    from taktflow.engine.runtime import WorkflowEngine
    from taktflow.forms.definition import FormDefinition

    _Base = WorkflowEngine
else:
    _Base = object


class DeploymentMixin(_Base):
    """deploy_paths, deploy_text, deploy, processes, process, process_source."""

    def deploy_paths(self, paths: Iterable[str], *, actor: str | None = None) -> list[dict]:
        """Deploy files and folders as one batch."""
        problems: list[DefinitionProblem] = []
        files = read_paths(paths, self.compilers, problems)
        return self.deploy(files, actor=actor, problems=problems)

    def deploy_text(self, name: str, text: str, *, actor: str | None = None) -> list[dict]:
        """Deploy one uploaded file."""
        return self.deploy(sources_from_text(name, text, self.compilers), actor=actor)

    def deploy(
        self,
        files: list[SourceFile],
        *,
        actor: str | None = None,
        problems: list[DefinitionProblem] | None = None,
    ) -> list[dict]:
        """Deploy a batch: all of it or, if any file has a problem, none of it.

        Returns one entry per process and decision: {kind, process_id | decision_id, version,
        file, changed}. Identical content deploys nothing new (changed False).
        """
        problems = list(problems or [])
        forms = _parse_forms([f for f in files if f.kind == FORM], problems)
        problems.extend(
            DefinitionProblem(
                f.name, "a connector file is not deployed: the connector runtime reads it from "
                "the connectors folder (`taktflow lint` checks it)", line=1,
            )
            for f in files if f.kind == CONNECTOR
        )  # fmt: skip
        files = [f for f in files if f.kind not in (FORM, CONNECTOR)]
        with self._unit() as unit:
            s = unit.session
            parser = self._parser(s)
            processes, decisions = parser.parse(files, problems)
            results: list[dict] = [
                self._store_form(unit, form, file, actor) for form, file in forms
            ]
            changed_decisions: set[str] = set()
            for d in decisions:
                entry = self._store_decision(unit, d)
                if entry["changed"]:
                    changed_decisions.add(d.decision_id)
                results.append(entry)
            s.flush()
            batch_ids = {p.process_id for p in processes}
            processes = processes + self._dependents(s, changed_decisions, batch_ids)
            for p in processes:
                results.append(self._store_version(unit, p, actor))
            if any(r["changed"] for r in results):
                self._audit(
                    unit,
                    "deployed",
                    None,
                    actor,
                    details={"deployed": [r for r in results if r["changed"]]},
                )
        return results

    def _parser(self, s: Session) -> DefinitionParser:
        def deployed_decisions(ids: set[str]) -> dict[str, SourceFile]:
            if not ids:
                return {}
            rows = s.execute(
                select(
                    m.DecisionVersion.decision_id,
                    m.DecisionVersion.file_name,
                    m.DecisionVersion.source,
                ).where(
                    m.DecisionVersion.decision_id.in_(ids), m.DecisionVersion.is_latest.is_(True)
                )
            )
            return {r[0]: SourceFile(r[1], r[2], "dmn") for r in rows}

        def deployed_processes(ids: set[str]) -> set[str]:
            if not ids:
                return set()
            return set(
                s.scalars(
                    select(m.ProcessVersion.process_id).where(
                        m.ProcessVersion.process_id.in_(ids), m.ProcessVersion.is_latest.is_(True)
                    )
                )
            )

        return DefinitionParser(
            actions=self.actions,
            deployed_decisions=deployed_decisions,
            deployed_processes=deployed_processes,
        )

    def _dependents(self, s: Session, changed: set[str], exclude: set[str]) -> list[ParsedProcess]:
        """Processes outside the batch whose latest version uses a decision that changed."""
        if not changed:
            return []
        rows = s.execute(
            select(
                m.ProcessVersion.process_id,
                m.ProcessVersion.file_name,
                m.ProcessVersion.source,
                m.ProcessVersion.decisions,
            ).where(m.ProcessVersion.is_latest.is_(True))
        ).all()
        wanted: dict[str, SourceFile] = {}
        pids: set[str] = set()
        for pid, file_name, source, decisions in rows:
            if pid in exclude or not changed & set(json.loads(decisions)):
                continue
            pids.add(pid)
            wanted.setdefault(file_name, SourceFile(file_name, source, "bpmn"))
        if not wanted:
            return []
        parsed, _ = self._parser(s).parse(list(wanted.values()))
        return [p for p in parsed if p.process_id in pids]

    def _store_decision(self, unit: Any, d: ParsedDecision) -> dict:
        s = unit.session
        latest = s.scalar(
            select(m.DecisionVersion).where(
                m.DecisionVersion.decision_id == d.decision_id,
                m.DecisionVersion.is_latest.is_(True),
            )
        )
        if latest is not None and latest.content_hash == d.file.sha256:
            return _deployed("decision", d.decision_id, latest.version, d.file, False)
        version = _supersede(latest)
        s.add(
            m.DecisionVersion(
                decision_id=d.decision_id,
                version=version,
                name=d.name,
                file_name=d.file.name,
                content_hash=d.file.sha256,
                source=d.file.text,
                is_latest=True,
                deployed_at=unit.now,
            )
        )
        return _deployed("decision", d.decision_id, version, d.file, True)

    def _store_form(
        self, unit: Any, form: FormDefinition, file: SourceFile, actor: str | None
    ) -> dict:
        s = unit.session
        latest = s.scalar(
            select(m.FormVersion).where(
                m.FormVersion.name == form.name, m.FormVersion.is_latest.is_(True)
            )
        )
        if latest is not None and latest.content_hash == file.sha256:
            return _deployed("form", form.name, latest.version, file, False)
        version = _supersede(latest)
        s.add(
            m.FormVersion(
                name=form.name,
                version=version,
                title=form.title[:400],
                file_name=file.name,
                content_hash=file.sha256,
                source=file.text,
                is_latest=True,
                deployed_at=unit.now,
                deployed_by=actor,
            )
        )
        s.flush()
        return _deployed("form", form.name, version, file, True)

    # ------------------------------------------------------------------ forms
    def forms(self) -> list[dict]:
        """Deployed forms with their latest version."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.FormVersion)
                .where(m.FormVersion.is_latest.is_(True))
                .order_by(m.FormVersion.name)
            ).all()
            return [_form_dict(v) for v in rows]

    def form(self, name: str, version: int | None = None) -> FormDefinition:
        """A deployed form, parsed (the latest version unless `version` is given)."""
        with self._reading() as s:
            row = _form_row(s, name, version)
            return _cached_form(row.content_hash, row.file_name, row.source)

    def form_source(self, name: str, version: int | None = None) -> dict:
        """A form version's YAML with its version data."""
        with self._reading() as s:
            row = _form_row(s, name, version)
            return _form_dict(row) | {"source": row.source}

    def _store_version(self, unit: Any, p: ParsedProcess, actor: str | None) -> dict:
        s = unit.session
        latest = s.scalar(
            select(m.ProcessVersion).where(
                m.ProcessVersion.process_id == p.process_id, m.ProcessVersion.is_latest.is_(True)
            )
        )
        content_hash = p.content_hash
        if latest is not None and latest.content_hash == content_hash:
            return _deployed("process", p.process_id, latest.version, p.file, False)
        version = _supersede(latest)
        s.add(
            m.ProcessVersion(
                process_id=p.process_id,
                version=version,
                name=p.name,
                file_name=p.file.name,
                content_hash=content_hash,
                source=p.file.text,
                spec=self.serializer.dumps_spec(p.spec, p.embedded),
                called_processes=json.dumps(p.called),
                decisions=json.dumps(p.decisions),
                message_starts=json.dumps(p.starts),
                is_latest=True,
                deployed_at=unit.now,
                deployed_by=actor,
            )
        )
        s.flush()
        return _deployed("process", p.process_id, version, p.file, True)

    # ------------------------------------------------------------------ process models
    def processes(self) -> list[dict]:
        """Deployed processes with their latest version."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ProcessVersion)
                .where(m.ProcessVersion.is_latest.is_(True))
                .order_by(m.ProcessVersion.process_id)
            ).all()
            return [_version_dict(v) for v in rows]

    def process(self, process_id: str) -> dict:
        """One process with all its versions, newest first."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ProcessVersion)
                .where(m.ProcessVersion.process_id == process_id)
                .order_by(m.ProcessVersion.version.desc())
            ).all()
            if not rows:
                raise NotFound(f"process {process_id!r} is not deployed")
            latest = _version_dict(rows[0])
            latest["versions"] = [_version_dict(v) for v in rows]
            return latest

    def process_source(self, process_id: str, version: int | None = None) -> str:
        """The BPMN XML a version was deployed from."""
        with self._reading() as s:
            pv = self._version(s, process_id, version)
            return pv.source

    def _version(self, s: Session, process_id: str, version: int | None) -> m.ProcessVersion:
        query = select(m.ProcessVersion).where(m.ProcessVersion.process_id == process_id)
        if version is None:
            query = query.where(m.ProcessVersion.is_latest.is_(True))
        else:
            query = query.where(m.ProcessVersion.version == version)
        pv = s.scalar(query)
        if pv is None:
            if version is not None:
                raise NotFound(f"process {process_id!r} has no version {version}")
            known = s.scalars(
                select(m.ProcessVersion.process_id)
                .where(m.ProcessVersion.is_latest.is_(True))
                .order_by(m.ProcessVersion.process_id)
            ).all()
            hint = f" (deployed: {', '.join(known)})" if known else " (nothing is deployed yet)"
            raise NotFound(f"process {process_id!r} is not deployed{hint}")
        return pv


def _parse_forms(
    files: list[SourceFile], problems: list[DefinitionProblem]
) -> list[tuple[FormDefinition, SourceFile]]:
    """The batch's form definitions; their problems join the batch's (nothing deploys then)."""
    # Imported here: forms read YAML through yamlflow, which plugs into this engine.
    from taktflow.forms.definition import parse_form

    forms: list[tuple[FormDefinition, SourceFile]] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            form = parse_form(file.text, file.name)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if form.name in seen:
            problems.append(
                DefinitionProblem(
                    file.name, f"form {form.name!r} is also defined in {seen[form.name]}"
                )
            )
            continue
        seen[form.name] = file.name
        forms.append((form, file))
    return forms


def _form_row(s: Session, name: str, version: int | None) -> m.FormVersion:
    """One version of a form (the latest unless `version` is given), or NotFound."""
    query = select(m.FormVersion).where(m.FormVersion.name == name)
    if version is None:
        query = query.where(m.FormVersion.is_latest.is_(True))
    else:
        query = query.where(m.FormVersion.version == version)
    row = s.scalar(query)
    if row is None:
        which = f" version {version}" if version is not None else ""
        raise NotFound(f"form {name!r}{which} is not deployed")
    return row


_FORM_CACHE: dict[str, FormDefinition] = {}


def _cached_form(content_hash: str, file_name: str, source: str) -> FormDefinition:
    """Parsed forms by content: a task page should not re-read the YAML on every view."""
    from taktflow.forms.definition import parse_form

    form = _FORM_CACHE.get(content_hash)
    if form is None:
        form = parse_form(source, file_name)
        if len(_FORM_CACHE) > 500:
            _FORM_CACHE.clear()
        _FORM_CACHE[content_hash] = form
    return form


def _form_dict(v: m.FormVersion) -> dict:
    return {
        "name": v.name,
        "title": v.title,
        "version": v.version,
        "file": v.file_name,
        "content_hash": v.content_hash,
        "deployed_at": v.deployed_at.isoformat(),
        "deployed_by": v.deployed_by,
    }


def _deployed(kind: str, ident: str, version: int, file: SourceFile, changed: bool) -> dict:
    return {
        "kind": kind,
        "process_id": ident if kind == "process" else None,
        "decision_id": ident if kind == "decision" else None,
        "form": ident if kind == "form" else None,
        "version": version,
        "file": file.origin or file.name,
        "changed": changed,
    }


def _version_dict(v: m.ProcessVersion) -> dict:
    return {
        "process_id": v.process_id,
        "name": v.name,
        "version": v.version,
        "file": v.file_name,
        "content_hash": v.content_hash,
        "deployed_at": v.deployed_at.isoformat(),
        "deployed_by": v.deployed_by,
        "calls": json.loads(v.called_processes),
        "decisions": json.loads(v.decisions),
        "starts": json.loads(v.message_starts),
    }


def _supersede(latest: m.ProcessVersion | m.DecisionVersion | m.FormVersion | None) -> int:
    """Retire the current latest version (if any); return the number of the next one."""
    if latest is None:
        return 1
    latest.is_latest = False
    return latest.version + 1
