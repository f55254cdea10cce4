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

/**
 * Shows `message` as a toast for a few seconds (also available as `window.showToast`); `level`
 * is `error` (the default), `success`, `info` or `warning`.
 */
function showToast(message, level = "error") {
  const box = document.getElementById("vt-toasts");
  const template = document.getElementById("vt-toast");
  if (!box || !template) {
    console.error(message);
    return;
  }
  const toast = template.content.firstElementChild.cloneNode(true);
  if (level !== "error") {
    toast.classList.replace("alert-error", `alert-${level}`);
    toast.setAttribute("role", "status");
  }
  toast.querySelector("[data-toast-message]").textContent = message;
  box.append(toast);
  setTimeout(() => toast.remove(), 10000);
}
window.showToast = showToast;

// Dismiss buttons of every toast, including the flash messages the page came with.
document.addEventListener("click", (event) => {
  event.target.closest?.("[data-toast-close]")?.closest("#vt-toasts > *")?.remove();
});

for (const flash of document.querySelectorAll("#vt-toasts [data-flash]")) {
  setTimeout(() => flash.remove(), 10000);
}

// Flash messages of htmx answers (`vibetuner::Flash`, sent in `HX-Trigger`).
document.addEventListener("vt:flash", (event) => {
  for (const { level, message } of event.detail?.messages ?? []) showToast(message, level);
});

// The header's menus (`<details data-menu>`) close on a click elsewhere and on Escape.
function closeMenus(except) {
  for (const menu of document.querySelectorAll("details[data-menu][open]")) {
    if (menu !== except) menu.removeAttribute("open");
  }
}
document.addEventListener("click", (event) => closeMenus(event.target.closest?.("details[data-menu]")));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeMenus();
});

// The theme switcher (`#vt-theme`): cycles through the system's preference and the themes the
// server offers, and keeps the choice in the `theme` cookie, which the server reads to render
// `data-theme` (no flash of the wrong theme on the next page).
document.addEventListener("click", (event) => {
  const button = event.target.closest?.("#vt-theme");
  if (!button) return;
  const choices = ["system", ...button.dataset.themes.split(" ").filter(Boolean)];
  const next = choices[(choices.indexOf(button.dataset.themeChoice) + 1) % choices.length];
  const secure = location.protocol === "https:" ? "; Secure" : "";
  if (next === "system") {
    document.cookie = `theme=; Path=/; Max-Age=0; SameSite=Lax${secure}`;
    document.documentElement.removeAttribute("data-theme");
  } else {
    document.cookie = `theme=${next}; Path=/; Max-Age=31536000; SameSite=Lax${secure}`;
    document.documentElement.dataset.theme = next;
  }
  button.dataset.themeChoice = next;
  button.setAttribute("aria-label", `Theme: ${next}. Switch theme`);
  button.title = `Theme: ${next}`;
  const icon = next === "system" || next === "light" ? next : "other";
  for (const svg of button.querySelectorAll("[data-theme-icon]")) {
    svg.hidden = svg.dataset.themeIcon !== icon;
  }
});

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
