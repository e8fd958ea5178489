"""The page's words and assets: setting tooltips (with their defaults), legend, the
keyboard map, CSS and the page script (keyboard, clicks on the canvas and timeline,
zoom). Colours and reason names come from the one table beside
:class:`~uvis.types.Reason`.
"""
from __future__ import annotations

from uvis.config import Config
from uvis.types import Reason, reason_css

_D = Config()


def tooltips(has_text: bool) -> dict[str, str]:
    """``info=`` text of every setting: what it does and its default."""
    f, t = _D.filters, _D.tracker
    score = "CLIP score" if has_text else "similarity to the closest example"
    return {
        "preset": "Replace the vocabulary with a preset class list (YouTube-VIS 2019 is the default).",
        "vocabulary": "The classes instances are labelled with, comma-separated. Applied when you leave the box "
                      "or press Enter. Default: the YouTube-VIS 2019 classes.",
        "templates": "Prompts per class, one per line, {} = the class name; each instance takes its closest "
                     "prompt. Applied when you leave the box. Default: the paper's 7 templates.",
        "pooling": "How a class's prompt similarities combine: max (closest prompt, default) or mean.",
        "objectness": f"Drop proposals whose objectness (proposer confidence) is below this. Default {f.objectness_threshold}.",
        "clip": (f"Drop instances whose {score} is below this. Default {f.clip_threshold}." if has_text else
                 f"Drop instances whose similarity to the closest example (of their class) is below this. "
                 f"Default {f.clip_threshold}."),
        "per_class": f"Per-class overrides of the {score} threshold, one 'class: value' per line. Applied when "
                     "you leave the box. Default: none.",
        "pmf_on": "Prototype memory filtering: drop instances unlike the prototypes of their class over all "
                  "videos. Default on.",
        "pmf_k": f"K: prototypes per class (spherical K-means over the class's survivors). Default {f.pmf_k}.",
        "pmf_tau": f"τ: keep an instance if its closest prototype has cosine similarity ≥ τ. Default {f.pmf_threshold}.",
        "lambda": f"λ: how much a track's memory keeps of its past (memory = λ·memory + (1−λ)·new). "
                  f"Default {t.memory_lambda}.",
        "w": f"w: weight of appearance (embedding) against mask overlap in the matching cost. Default {t.embedding_weight}.",
        "max_cost": f"Max cost: a detection further than this from every track starts a new track. Default {t.max_cost}.",
        "similar": "Minimum cosine similarity of embeddings for 'apply the label to these'. Default 0.8.",
    }


KEYS: tuple[tuple[str, str], ...] = (
    ("← / →", "previous / next frame"), ("[ / ]", "select the previous / next instance of the frame"),
    ("space", "play / pause"), ("A", "accept the selection"),
    ("X", "reject the selection"), ("R", "relabel: focus the class box (type, Enter relabels)"),
    ("T", "whole-track mode on/off"),
    ("Ctrl+Z", "undo"), ("Ctrl+Shift+Z", "redo"), ("1–9", "relabel as a recent class"),
    ("Esc", "clear the selection / close this"), ("?", "show / hide this list"),
)


def keys_html() -> str:
    rows = "".join(f"<tr><td><kbd>{k}</kbd></td><td>{v}</td></tr>" for k, v in KEYS)
    return (f"<div id='keys-overlay' class='uv-keys' hidden><div class='uv-keys-box'><b>Keyboard</b>"
            f"<table>{rows}</table><div class='uv-hint'>Keys work when no text box has the focus.</div></div></div>")


def legend_html(has_text: bool) -> str:
    items = "".join(f"<span><i style='background:{r.hex}'></i>{'kept' if r == Reason.KEPT else 'dropped: ' + r.words(has_text)}"
                    "</span>" for r in Reason)
    return (f"<div class='uv-legend'>{items}<span><i style='background:rgb(255,221,0)'></i>selected</span>"
            "<span class='uv-hint'>hover an instance for its details · * = curated by you</span></div>")


CSS = """
.uv-banner {font-size: 0.85em} .uv-banner p {margin: 0.1em 0}
#counts {font-size: 0.95em} #counts p {margin:0}
.uv-canvas {width:100%}
.uv-grid {display:grid; grid-template-columns: 1fr 1fr; gap:4px}
.uv-focus {display:grid; grid-template-columns: 3fr 1fr; gap:4px}
.uv-focus-side {display:flex; flex-direction:column; gap:4px}
.uv-pane {position:relative; min-width:0}
.uv-pane-title {position:absolute; left:0; top:0; z-index:1500; font-family:'DejaVu Sans Mono',ui-monospace,monospace;
  line-height:1.35; padding:0 0.25em; background:rgba(20,20,30,0.75); color:#fff; border-bottom-right-radius:0.3em;
  white-space:nowrap; pointer-events:none}
.uv-zoom {overflow:hidden; position:relative; border-radius:4px; background:#222}
.uv-stage {position:relative; width:100%; container-type:inline-size; transform-origin:0 0}
.uv-img {display:block; width:100%; height:100%; user-select:none; -webkit-user-drag:none}
.uv-hit {position:absolute; cursor:pointer; box-sizing:border-box}
.uv-hit:hover {outline:1px dashed #fff}
.uv-tip {display:none; position:absolute; left:0; top:100%; z-index:2000; background:rgba(20,20,30,0.93);
  color:#eee; font-size:12px; line-height:1.3; padding:4px 6px; border-radius:4px; white-space:nowrap;
  pointer-events:none}
.uv-tip.uv-tip-left {left:auto; right:0} .uv-tip:not(.uv-tip-below) {top:auto; bottom:100%}
.uv-hit:hover .uv-tip {display:block}
.uv-tag {position:absolute; z-index:1000; pointer-events:none; font-family:'DejaVu Sans Mono',ui-monospace,monospace;
  line-height:1.35; padding:0 0.25em; border-radius:0.2em; white-space:nowrap; overflow:hidden; box-sizing:border-box}
.uv-cap {font-size:0.72em; line-height:1.25; color:var(--body-text-color-subdued); margin:0 0 0 2px;
  white-space:nowrap; overflow:hidden; text-overflow:ellipsis}
.uv-legend {display:flex; gap:10px; flex-wrap:wrap; font-size:0.78em; margin:0}
.uv-legend span {display:inline-flex; align-items:center; gap:4px}
.uv-legend i {display:inline-block; width:10px; height:10px; border-radius:3px}
.uv-card {border:1px solid var(--border-color-primary); border-radius:8px; padding:4px 8px; font-size:0.85em}
.uv-card-title {font-weight:600; margin-bottom:2px}
.uv-hint {color: var(--body-text-color-subdued)}
.uv-bars {margin:3px 0}
.uv-bar {display:flex; align-items:center; gap:6px; margin:1px 0}
.uv-bar-name {width:120px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap}
.uv-bar-track {flex:1; height:8px; background:var(--neutral-200); border-radius:4px; overflow:hidden}
.uv-bar-fill {display:block; height:100%; background:#4f6bed}
.uv-bar-val {width:36px; text-align:right; font-variant-numeric:tabular-nums}
.uv-prompt {color: var(--body-text-color-subdued)}
.uv-reason {padding:0 6px; border-radius:4px; color:white}
.uv-hidden {display:none !important}
#notice {min-height:0} #notice p {margin:0}
.uv-warn {background:#fff3cd; color:#664d03; border:1px solid #ffe69c; border-radius:6px; padding:3px 8px;
  font-size:0.9em; white-space:pre-wrap}
.uv-info {color:var(--body-text-color); font-size:0.9em; padding:3px 2px; white-space:pre-wrap}
.uv-badge {display:inline-block; padding:0 6px; border-radius:8px; font-size:0.8em; color:white; background:#6c757d}
.uv-badge-partial, .uv-badge-running {background:#0d6efd} .uv-badge-cancelled {background:#fd7e14}
.uv-badge-failed {background:#dc3545} .uv-badge-done {background:#198754}
.uv-tl {font-size:0.8em} .uv-tl-head {margin:2px 0}
.uv-timeline {display:block; cursor:pointer; background:var(--background-fill-secondary)}
.uv-tl-name {font-size:10px; fill:var(--body-text-color); pointer-events:none}
.uv-lane-bg {fill:transparent} .uv-lane:hover .uv-lane-bg {fill:rgba(79,107,237,0.12)}
.uv-tl-selected .uv-lane-bg {fill:rgba(255,221,0,0.35)}
.uv-tl-cursor {stroke:#e74c3c; stroke-width:2}
.uv-keys {position:fixed; inset:0; background:rgba(0,0,0,0.45); z-index:5000; display:flex; align-items:center;
  justify-content:center} .uv-keys[hidden] {display:none}
.uv-keys-box {background:var(--background-fill-primary); padding:14px 20px; border-radius:10px; min-width:320px}
.uv-keys td {padding:2px 10px}
.uv-crops {display:flex; flex-wrap:wrap; gap:6px; max-height:420px; overflow:auto}
.uv-crop {width:112px; border:2px solid transparent; border-radius:6px; padding:2px; cursor:pointer; font-size:0.72em;
  position:relative}
.uv-crop img {width:100%; height:84px; object-fit:contain; background:#222; border-radius:4px}
.uv-crop.uv-crop-sel {border-color:#4f6bed; background:rgba(79,107,237,0.12)}
.uv-crop .uv-go {position:absolute; top:3px; right:3px; background:rgba(0,0,0,0.6); color:white; border-radius:3px;
  padding:0 4px}
#history-list ol {margin:0; padding-left:1.6em; max-height:300px; overflow:auto}
#history-list li.uv-undone {color:var(--body-text-color-subdued); text-decoration:line-through}
""" + reason_css()

PAGE_JS = r"""
() => {
  if (window.uvInstalled) return; window.uvInstalled = true;
  const byId = (id) => document.getElementById(id);
  const send = (cmd) => {
    const box = document.querySelector('#cmd-box textarea, #cmd-box input');
    if (!box) return;
    cmd.nonce = Date.now() + Math.random();
    box.value = JSON.stringify(cmd);
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => { const b = byId('cmd-run'); if (b) b.click(); }, 30);
  };
  window.uvSend = send;
  const click = (id) => { const b = byId(id); if (b) b.click(); };
  // clicks on the canvas (pick an instance), the timeline (jump + select a track), the crops
  document.addEventListener('click', (e) => {
    const hit = e.target.closest('.uv-hit');
    if (hit && !window.uvDragged) { send({op: 'pick', index: parseInt(hit.dataset.pick)}); return; }
    const svg = e.target.closest('#timeline-svg');
    if (svg) {
      const r = svg.getBoundingClientRect();
      const w = parseFloat(svg.dataset.width), x0 = parseFloat(svg.dataset.x0), n = parseInt(svg.dataset.frames);
      const x = (e.clientX - r.left) / r.width * w;
      const frame = Math.max(0, Math.min(n - 1, Math.floor((x - x0) / (w - x0) * n)));
      const lane = e.target.closest('[data-track]');
      send({op: 'jump', frame: x < x0 ? -1 : frame, track: lane ? parseInt(lane.dataset.track) : -1});
      return;
    }
    const go = e.target.closest('.uv-go');
    if (go) { const c = go.closest('.uv-crop');
      send({op: 'goto', video: c.dataset.video, frame: parseInt(c.dataset.frame), index: parseInt(c.dataset.index)});
      return; }
    const crop = e.target.closest('.uv-crop');
    if (crop) {
      crop.classList.toggle('uv-crop-sel');
      const keys = [...document.querySelectorAll('.uv-crop.uv-crop-sel')].map((c) => c.dataset.key);
      const box = document.querySelector('#review-selection textarea, #review-selection input');
      if (box) { box.value = keys.join('\n'); box.dispatchEvent(new Event('input', {bubbles: true})); }
      const n = byId('review-count'); if (n) n.textContent = keys.length + ' selected';
      return;
    }
    const hist = e.target.closest('[data-history]');
    if (hist) { send({op: hist.dataset.op, id: parseInt(hist.dataset.history)}); }
  });
  // keyboard
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && !['range', 'checkbox', 'radio'].includes(t.type))
                         || t.isContentEditable);
    const overlay = byId('keys-overlay');
    if (e.key === 'Escape') { if (overlay) overlay.hidden = true; if (!typing) send({op: 'clear'}); return; }
    if (e.key === 'Enter' && t && t.closest && t.closest('#relabel-choice')) {
      setTimeout(() => click('relabel'), 250);  // after the class box committed the typed value
      return;
    }
    if (typing) return;
    if (t && t.tagName === 'INPUT' && t.type === 'range' && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) return;
    const k = e.key;
    let done = true;
    if ((e.ctrlKey || e.metaKey) && (k === 'z' || k === 'Z')) click(e.shiftKey ? 'redo' : 'undo');
    else if (e.ctrlKey || e.metaKey || e.altKey) done = false;
    else if (k === 'ArrowRight') click('next-frame');
    else if (k === 'ArrowLeft') click('prev-frame');
    else if (k === ' ') click('play');
    else if (k === 'a' || k === 'A') click('accept');
    else if (k === 'x' || k === 'X') click('reject');
    else if (k === 'r' || k === 'R') { const i = document.querySelector('#relabel-choice input'); if (i) { i.focus(); i.select(); } }
    else if (k === 't' || k === 'T') { const c = document.querySelector('#track-mode input'); if (c) c.click(); }
    else if (k === '?') { if (overlay) overlay.hidden = !overlay.hidden; }
    else if (/^[1-9]$/.test(k)) send({op: 'recent', k: parseInt(k)});
    else if (k === ']' || k === '[') send({op: 'cycle', step: k === ']' ? 1 : -1});
    else done = false;
    if (done) e.preventDefault();
  });
  // wheel zoom and drag pan on the large panel (focus / one canvas)
  window.uvZoom = {s: 1, x: 0, y: 0};
  const apply = () => {
    const st = document.querySelector('.uv-focus-main .uv-stage, .uv-single .uv-stage');
    if (st) st.style.transform = `translate(${uvZoom.x}px, ${uvZoom.y}px) scale(${uvZoom.s})`;
  };
  new MutationObserver(apply).observe(document.body, {childList: true, subtree: true});
  document.addEventListener('wheel', (e) => {
    const z = e.target.closest('.uv-focus-main .uv-zoom, .uv-single .uv-zoom');
    if (!z) return;
    e.preventDefault();
    const r = z.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    const s2 = Math.max(1, Math.min(8, uvZoom.s * (e.deltaY < 0 ? 1.25 : 0.8)));
    uvZoom.x = s2 === 1 ? 0 : mx - (mx - uvZoom.x) * s2 / uvZoom.s;
    uvZoom.y = s2 === 1 ? 0 : my - (my - uvZoom.y) * s2 / uvZoom.s;
    uvZoom.s = s2; apply();
  }, {passive: false});
  let drag = null;
  document.addEventListener('mousedown', (e) => {
    const z = e.target.closest('.uv-focus-main .uv-zoom, .uv-single .uv-zoom');
    window.uvDragged = false;
    if (z && uvZoom.s > 1) drag = {x: e.clientX, y: e.clientY, ox: uvZoom.x, oy: uvZoom.y};
  });
  document.addEventListener('mousemove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) window.uvDragged = true;
    uvZoom.x = drag.ox + dx; uvZoom.y = drag.oy + dy; apply();
  });
  document.addEventListener('mouseup', () => { drag = null; setTimeout(() => { window.uvDragged = false; }, 0); });
}
"""
