// The admin's page of one logged request: its answer formatted the way the console formats
// it, by the same module (markdown.js), never a copy of it.
import { renderFormatted } from "./markdown.js";

for (const node of document.querySelectorAll("[data-format]")) {
  renderFormatted(node, node.textContent.trim());
  node.classList.add("is-formatted");
}
