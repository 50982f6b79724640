// Markdown from models and GitHub, made safe: `marked` renders it, raw HTML in the source is shown
// as text (never parsed), DOMPurify removes anything that could run, and links keep only
// http(s) and mailto targets and open in a new tab without access to this page.
import { Marked } from "marked";
import DOMPurify from "dompurify";

const SAFE_LINK = /^(https?:|mailto:)/i;

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    // HTML written in the markdown is shown as the text it is.
    html: ({ text }) => escape(text),
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") ?? "";
    if (!SAFE_LINK.test(href.trim())) node.removeAttribute("href");
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.tagName === "IMG") node.remove();
});

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/// The HTML for `source`, safe to put in the page.
export function render(source: string): string {
  const html = marked.parse(source) as string;
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS: ["p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
      "a", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td", "input"],
    ALLOWED_ATTR: ["href", "title", "type", "checked", "disabled", "align"],
  });
}
