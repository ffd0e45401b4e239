// Reads BPMN files the way bpmn-js (the modeler) does, with bpmn-moddle, and prints
// {file: {type, warnings}} as JSON. Used by test_modeler_import.py.
import { readFileSync } from "node:fs";
import { BpmnModdle } from "bpmn-moddle";

const moddle = new BpmnModdle();
const out = {};
for (const file of process.argv.slice(2)) {
  try {
    const { rootElement, warnings } = await moddle.fromXML(readFileSync(file, "utf8"));
    out[file] = { type: rootElement.$type, warnings: warnings.map((w) => w.message) };
  } catch (err) {
    out[file] = { type: null, warnings: [String(err.message || err)] };
  }
}
console.log(JSON.stringify(out));
