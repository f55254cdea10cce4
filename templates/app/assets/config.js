// JavaScript entry: bundled into assets/statics/js/bundle.js by `npm run build`.
import htmx from "htmx.org";
// htmx 4 ships its extensions: SSE (`hx-sse:connect`) and the `upsert` swap used by /notes.
import "htmx.org/dist/ext/hx-sse.js";
import "htmx.org/dist/ext/hx-upsert.js";

window.htmx = htmx;
