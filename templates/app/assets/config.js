// JavaScript entry: bundled into assets/statics/js/bundle.js by `npm run build`.
import htmx from "htmx.org";
// htmx 4 ships its extensions: SSE (`hx-sse:connect`) and the `upsert` swap used by /notes.
import "htmx.org/dist/ext/hx-sse.js";
import "htmx.org/dist/ext/hx-upsert.js";

window.htmx = htmx;

// Error answers to htmx requests. A 4xx answer carrying an HTML fragment (a form with its
// validation error, say a 422) is swapped into the target like any answer. The others (a 5xx,
// the framework's error page or `{"detail": ...}` JSON, no answer at all) would replace the
// target with a whole page or vanish, so they show as a toast instead (the skeleton's
// `#vt-toasts`, styled by its `#vt-toast` template). `hx-status:NNN` on an element overrides.

/** Shows `message` as a toast for a few seconds (also available as `window.showToast`). */
function showToast(message) {
  const box = document.getElementById("vt-toasts");
  const template = document.getElementById("vt-toast");
  if (!box || !template) {
    console.error(message);
    return;
  }
  const toast = template.content.firstElementChild.cloneNode(true);
  toast.querySelector("[data-toast-message]").textContent = message;
  toast.querySelector("[data-toast-close]")?.addEventListener("click", () => toast.remove());
  box.append(toast);
  setTimeout(() => toast.remove(), 10000);
}
window.showToast = showToast;

/** The error's public detail: from the JSON body or the error page's `vt-error` meta tag. */
function errorDetail(ctx, isPage) {
  try {
    if (isPage) {
      const page = new DOMParser().parseFromString(ctx.text, "text/html");
      return page.querySelector('meta[name="vt-error"]')?.content;
    }
    return JSON.parse(ctx.text)?.detail;
  } catch {
    return undefined;
  }
}

document.addEventListener("htmx:after:request", (event) => {
  const ctx = event.detail.ctx;
  const status = ctx.response?.status ?? 0;
  if (status < 400) return;
  const hx = ctx.hx || {};
  if (hx.redirect || hx.location || hx.refresh || hx.reswap || hx.retarget) return; // the server decides
  const type = ctx.response.headers.get("content-type") || "";
  const isHtml = type.startsWith("text/html");
  const isPage = isHtml && /^\s*(<!doctype html|<html[\s>])/i.test(ctx.text);
  if (status < 500 && isHtml && !isPage) return; // a fragment for the target: swap it
  if (ctx.sourceElement?.hasAttribute?.(`hx-status:${status}`)) return; // the page decides
  ctx.swap = "none";
  const reason = ctx.response.raw.statusText; // empty over HTTP/2
  const label = reason ? `${status} ${reason}` : `error ${status}`;
  const detail = errorDetail(ctx, isPage);
  // 5xx details are generic unless the server meant them for the user (a 503's message).
  showToast(
    status >= 500 && (!detail || detail === reason)
      ? `Something went wrong on the server (${label}). Please try again.`
      : detail || label,
  );
});

document.addEventListener("htmx:error", (event) => {
  const { ctx, error } = event.detail;
  if (!ctx) return; // not a request (htmx logs it)
  showToast(
    error?.name === "AbortError"
      ? "The server took too long to answer. Please try again."
      : "The server could not be reached. Check your connection and try again.",
  );
});
