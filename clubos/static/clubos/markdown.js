// The answer formatter shared by the console (console.js) and the admin's request page
// (requestlog-detail.js): **bold**, line breaks, numbered and bulleted lists.
//
// Model text is only ever put in the page through textContent and createTextNode: markup in
// an answer is shown as text, never parsed.

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function appendInline(parent, text) {
  // Split on **bold** pairs; an unclosed ** (mid-stream) stays literal until it closes.
  const parts = text.split(/\*\*(.+?)\*\*/g);
  parts.forEach((part, index) => {
    if (!part) return;
    if (index % 2 === 1) parent.appendChild(el("strong", null, part));
    else parent.appendChild(document.createTextNode(part));
  });
}

const ORDERED = /^\s*(\d{1,3})[.)]\s+(.*)$/;
const BULLET = /^\s*[-*•]\s+(.*)$/;

export function renderFormatted(container, text) {
  const fragment = document.createDocumentFragment();
  let paragraph = null;
  let list = null;
  let listKind = "";
  const closeParagraph = () => {
    paragraph = null;
  };
  const closeList = () => {
    list = null;
    listKind = "";
  };
  for (const line of String(text).replace(/\r\n?/g, "\n").split("\n")) {
    if (!line.trim()) {
      closeParagraph();
      closeList();
      continue;
    }
    const ordered = ORDERED.exec(line);
    const bullet = ordered ? null : BULLET.exec(line);
    if (ordered || bullet) {
      closeParagraph();
      const kind = ordered ? "ol" : "ul";
      if (!list || listKind !== kind) {
        list = el(kind);
        listKind = kind;
        if (ordered && ordered[1] !== "1") list.start = Number(ordered[1]);
        fragment.appendChild(list);
      }
      const item = el("li");
      if (ordered) item.value = Number(ordered[1]);
      appendInline(item, ordered ? ordered[2] : bullet[1]);
      list.appendChild(item);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      // An indented continuation of the last list item.
      const last = list.lastElementChild;
      last.appendChild(el("br"));
      appendInline(last, line.trim());
      continue;
    }
    closeList();
    if (paragraph) paragraph.appendChild(el("br"));
    else {
      paragraph = el("p");
      fragment.appendChild(paragraph);
    }
    appendInline(paragraph, line);
  }
  container.replaceChildren(fragment);
}
