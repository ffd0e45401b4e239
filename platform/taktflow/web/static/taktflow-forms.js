// Task forms on the shop floor: conditional fields, live tolerance verdicts, barcode scanners.
// The server checks everything again; this only helps the operator while typing.
(function () {
  "use strict";

  function fieldValue(form, name) {
    const box = form.querySelector('[data-field="' + name + '"]');
    if (!box || box.closest("[hidden]")) return null;
    const type = box.dataset.type;
    if (type === "checkbox") return box.querySelector("input").checked;
    if (type === "multiselect") {
      return Array.from(box.querySelectorAll("input:checked")).map((i) => i.value);
    }
    const input = box.querySelector("input, select, textarea");
    return input ? input.value.trim() : null;
  }

  function parseNumber(text) {
    if (!/^[+-]?(\d+([.,]\d*)?|[.,]\d+)$/.test(text)) return null;
    return parseFloat(text.replace(",", "."));
  }

  function verdict(input) {
    const value = parseNumber(input.value.trim());
    if (value === null) return null;
    const lower = input.dataset.lower === "" ? null : parseFloat(input.dataset.lower);
    const upper = input.dataset.upper === "" ? null : parseFloat(input.dataset.upper);
    if ((lower !== null && value < lower) || (upper !== null && value > upper)) return "out";
    return "in";
  }

  function same(value, operand) {
    if (value === null || value === "") return operand === null;
    if (Array.isArray(value)) return value.some((v) => same(v, operand));
    if (typeof value === "boolean" || typeof operand === "boolean") return value === operand;
    const a = parseNumber(String(value)), b = parseNumber(String(operand));
    if (a !== null && b !== null) return a === b;
    return String(value) === String(operand);
  }

  function holds(form, cond) {
    const value = fieldValue(form, cond.field);
    if ("filled" in cond) {
      const filled = !(value === null || value === "" || value === false ||
                       (Array.isArray(value) && value.length === 0));
      return filled === cond.filled;
    }
    if ("out_of_tolerance" in cond) {
      const box = form.querySelector('[data-field="' + cond.field + '"] input');
      if (!box || value === null || value === "") return false;
      return (verdict(box) === "out") === cond.out_of_tolerance;
    }
    if ("in" in cond) return cond.in.some((o) => same(value, o));
    if ("equals" in cond) return same(value, cond.equals);
    return !same(value, cond.not_equals);
  }

  function refresh(form) {
    // Twice: a field shown by one condition may control another.
    for (let pass = 0; pass < 2; pass++) {
      form.querySelectorAll("[data-show-if]").forEach((el) => {
        el.hidden = !holds(form, JSON.parse(el.dataset.showIf));
      });
    }
    form.querySelectorAll('[data-type="measurement"] input').forEach((input) => {
      const out = document.getElementById(input.id + "-verdict");
      const v = verdict(input);
      out.textContent = v === null ? "" : v === "in" ? "✔ in tolerance" : "✘ out of tolerance";
      out.className = "verdict" + (v ? " " + v : "");
    });
  }

  function nextField(form, from) {
    const inputs = Array.from(form.querySelectorAll("input, select, textarea, button[type=submit]"))
      .filter((el) => el.type !== "hidden" && !el.disabled && !el.closest("[hidden]"));
    const at = inputs.indexOf(from);
    return at >= 0 ? inputs[at + 1] : null;
  }

  document.querySelectorAll("form[data-task-form]").forEach((form) => {
    form.addEventListener("input", () => refresh(form));
    form.addEventListener("change", () => refresh(form));
    // A barcode scanner types the code and presses Enter: move on instead of submitting.
    form.addEventListener("keydown", (event) => {
      const el = event.target;
      if (event.key !== "Enter" || el.tagName !== "INPUT" || el.type === "submit") return;
      event.preventDefault();
      const next = nextField(form, el);
      if (next) next.focus();
    });
    form.addEventListener("submit", () => {
      form.querySelectorAll("button[type=submit]").forEach((b) => {
        // Disabled after the click is sent, so the button's own name/value still goes along.
        setTimeout(() => { b.disabled = true; }, 0);
      });
    });
    refresh(form);
    const first = form.querySelector(".has-error input, .has-error select, .has-error textarea");
    if (first) first.focus();
  });
})();
