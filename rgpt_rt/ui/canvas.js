// The region canvas (runs once per page, as gr.HTML's js_on_load). `element` holds the rendered template, whose
// innerHTML Gradio replaces when Python sends a new picture; listeners live on `element` and `window`, so they
// survive that. Coordinates go to Python as fractions of the displayed picture (its size differs from the
// image's). Events, all through trigger('select', {index: kind, value: payload}):
//   box:   a drag in box mode                    value [fx0, fy0, fx1, fy1]
//   click: a click (no drag) in box mode         value [fx, fy]       (inserts the region under it)
//   mask:  "add painted mask" in paint mode      value PNG data URL   (painted pixels are opaque)
const st = { mode: "box", brush: 12, drag: null, paint: null };
const q = (sel) => element.querySelector(sel);
const frac = (ev) => {
  const r = q("img.frame").getBoundingClientRect();
  const cl = (v) => Math.min(Math.max(v, 0), 1);
  return { fx: cl((ev.clientX - r.left) / r.width), fy: cl((ev.clientY - r.top) / r.height),
           px: Math.min(Math.max(ev.clientX - r.left, 0), r.width), py: Math.min(Math.max(ev.clientY - r.top, 0), r.height) };
};
function sync() {
  const img = q("img.frame"), cv = q("canvas.paint");
  element.querySelectorAll("input.mode").forEach((r) => { r.checked = r.value === st.mode; });
  const b = q("input.brush");
  if (b) b.value = st.brush;
  const stage = q(".stage");
  if (stage) stage.dataset.mode = st.mode;
  if (!img || !cv) return;
  const fit = () => {
    if (cv.width !== img.naturalWidth || cv.height !== img.naturalHeight) {
      cv.width = img.naturalWidth; cv.height = img.naturalHeight;
    }
  };
  if (img.complete && img.naturalWidth) fit(); else img.addEventListener("load", fit, { once: true });
}
function dab(p) {
  const cv = q("canvas.paint"), r = q("img.frame").getBoundingClientRect(), ctx = cv.getContext("2d");
  const s = cv.width / r.width, x = p.px * s, y = p.py * s;
  ctx.strokeStyle = ctx.fillStyle = "rgba(255, 255, 255, 1)";
  ctx.lineWidth = st.brush * s; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath();
  if (st.paint) { ctx.moveTo(st.paint.x, st.paint.y); ctx.lineTo(x, y); ctx.stroke(); }
  else { ctx.arc(x, y, (st.brush * s) / 2, 0, 2 * Math.PI); ctx.fill(); }
  st.paint = { x, y };
}
element.addEventListener("change", (ev) => {
  if (ev.target.classList.contains("mode")) { st.mode = ev.target.value; sync(); }
  if (ev.target.classList.contains("brush")) st.brush = Number(ev.target.value);
});
element.addEventListener("click", (ev) => {
  const cv = q("canvas.paint");
  if (ev.target.closest("button.add-mask") && cv) trigger("select", { index: "mask", value: cv.toDataURL("image/png") });
  if (ev.target.closest("button.clear-paint") && cv) cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
});
element.addEventListener("mousedown", (ev) => {
  if (!ev.target.closest(".surface") || ev.button !== 0) return;
  ev.preventDefault();  // no native image drag, no text selection
  const p = frac(ev);
  if (st.mode === "paint") { st.paint = null; st.painting = true; dab(p); return; }
  st.drag = p;
});
window.addEventListener("mousemove", (ev) => {
  if (st.painting) { dab(frac(ev)); return; }
  if (!st.drag) return;
  const p = frac(ev), b = q(".band"), d = st.drag;
  b.style.display = "block";
  b.style.left = Math.min(d.px, p.px) + "px"; b.style.top = Math.min(d.py, p.py) + "px";
  b.style.width = Math.abs(p.px - d.px) + "px"; b.style.height = Math.abs(p.py - d.py) + "px";
});
window.addEventListener("mouseup", (ev) => {
  if (st.painting) { st.painting = false; st.paint = null; return; }
  if (!st.drag) return;
  const d = st.drag, p = frac(ev);
  st.drag = null;
  const b = q(".band");
  if (b) b.style.display = "none";
  if (Math.abs(p.px - d.px) < 4 && Math.abs(p.py - d.py) < 4) trigger("select", { index: "click", value: [d.fx, d.fy] });
  else trigger("select", { index: "box", value: [d.fx, d.fy, p.fx, p.fy] });
});
watch("value", sync);
sync();
element.dataset.rgptReady = "1";  // the listeners are on: tests wait for this before they draw
