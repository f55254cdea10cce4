// JavaScript entry: bundled into assets/statics/js/bundle.js by `npm run build`.
import htmx from "htmx.org";

window.htmx = htmx;
