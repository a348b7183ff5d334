"""ipywidgets explorers: :func:`explorer` (every method, one word at a time, uploads) and the
older :func:`heatmap_explorer` (explain functions given by the caller).

:func:`explorer` reads trained models from the cache (:mod:`lvwlib.experiment.artefacts`)
and never trains; with no trained model it says what to run. Its computations
live in :mod:`lvwlib.ui.explorer`; this module only wires controls and draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from lvwlib.core.maps import combined_word_map, upsample_cam
from lvwlib.core.metrics import mask_iou, quantile_mask
from lvwlib.experiment.pipeline import METHOD_LABELS, METHODS
from lvwlib.paper.viz import to_numpy_image

# (trunk [B, Ct, h, w], index [B]) -> (logits [B, C], word maps [B, m, h, w])
ExplainFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def explain_one(
    explain: ExplainFn, trunk: torch.Tensor, index: int, cam: torch.Tensor, size: int, q: float
) -> dict[str, torch.Tensor | float | int]:
    """Maps, masks and IoU of one image.

    Args:
        trunk: [Ct, h, w] trunk features of the image; cam: [hc, wc] its Grad-CAM.
    Returns:
        dict with ``cam`` and ``a_k`` ([S, S] in [0, 1]), their masks at q,
        ``iou`` and the predicted class ``pred``.
    """
    logits, maps = explain(trunk[None].float(), torch.tensor([index]))
    a_bar = upsample_cam(cam[None], size)
    a_k = combined_word_map(maps.detach(), size, "minmax")
    m_bar, m_k = quantile_mask(a_bar, q), quantile_mask(a_k, q)
    return {
        "cam": a_bar[0], "a_k": a_k[0], "mask_cam": m_bar[0], "mask_a_k": m_k[0],
        "iou": mask_iou(m_bar, m_k).item(), "pred": int(logits.argmax(1)),
    }


def heatmap_explorer(
    images: Callable[[int], torch.Tensor],
    trunk: torch.Tensor,
    cams: torch.Tensor,
    labels: list[int],
    classes: list[str],
    explainers: Mapping[str, ExplainFn],
) -> widgets.VBox:
    """Build (and display) the explorer.

    Args:
        images: index -> image [3, S, S] in [0, 1].
        trunk: [N, Ct, h, w] trunk features of the same images (unflipped).
        cams: [N, hc, wc] the base model's Grad-CAM of the same images.
        labels: [N] true classes; classes: class names.
        explainers: method name -> explain function (see :data:`ExplainFn`).
    """
    index = widgets.IntSlider(0, 0, len(labels) - 1, description="image")
    method = widgets.Dropdown(options=list(explainers), description="method")
    q = widgets.FloatSlider(50.0, min=10.0, max=95.0, step=5.0, description="q")
    out = widgets.Output()

    def draw(*_: object) -> None:
        i = index.value
        image = images(i)
        res = explain_one(explainers[method.value], trunk[i], i, cams[i], image.shape[-1], q.value)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 4, figsize=(11, 3))
            img = to_numpy_image(image)
            panels = [
                (None, f"true: {classes[labels[i]]}\npred: {classes[res['pred']]}"),
                (res["cam"], "base Grad-CAM"),
                (res["a_k"], f"{method.value}: top-word map A^k"),
                (res["mask_cam"].float() + 2 * res["mask_a_k"].float(), f"masks at q={q.value:.0f}: IoU {res['iou']:.2f}"),
            ]
            for ax, (overlay, title) in zip(axes, panels, strict=True):
                ax.imshow(img)
                if overlay is not None:
                    cmap = "jet" if "mask" not in title else "viridis"
                    ax.imshow(overlay.numpy(), cmap=cmap, alpha=0.5)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
            plt.show()

    for control in (index, method, q):
        control.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([index, method, q]), out])
    display(box)
    draw()
    return box


# --------------------------------------------------------------------------- the explorer

ORDERS = ("by index", "by class", "misclassified only", "sorted by IoU (lowest first)")


class Explorer:
    """Controls, callbacks and drawing of the model explorer (see :func:`explorer`).

    Every callback ends in :meth:`update`, which stores what it showed in
    ``self.view`` (arrays and numbers), ``self.word`` (the drilled-in word) and
    the time it took in ``self.seconds``; tests read those.
    """

    def __init__(self, params_file: str = "params/quick.yaml", params: dict | None = None) -> None:
        from lvwlib.ui import explorer as ex

        self.ex = ex
        self.params_file = params_file
        self.params = params if params is not None else ex.load_params_file(params_file)
        self.cache_dir = ex.resolve(ex.experiment_from_params(self.params).run.cache_dir)
        self.choices = ex.cached_choices(self.params)
        self.session: ex.Session | None = None
        self.upload_image: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # image, trunk, cam
        self.view: dict | None = None
        self.word: dict | None = None
        self.seconds = 0.0
        style = {"description_width": "70px"}
        self.status = widgets.HTML()
        self.dataset = widgets.Dropdown(options=list(self.choices), description="dataset", style=style)
        self.seed = widgets.Dropdown(options=[], description="seed", style=style)
        self.method = widgets.Dropdown(options=[(METHOD_LABELS[m], m) for m in METHODS], value="lvw",
                                       description="method", style=style)
        self.order = widgets.Dropdown(options=ORDERS, description="images", style=style)
        self.klass = widgets.Dropdown(options=[], description="class", style=style, disabled=True)
        self.position = widgets.IntSlider(0, 0, 0, description="image", style=style, continuous_update=False)
        self.m = widgets.IntSlider(10, 1, 20, description="m", style=style, continuous_update=False)
        self.q = widgets.FloatSlider(50.0, min=5.0, max=95.0, step=5.0, description="q", style=style,
                                     continuous_update=False)
        self.word_pick = widgets.Dropdown(options=[], description="word", style=style)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your image")
        self.back = widgets.Button(description="back to test set", disabled=True)
        self.iou_text = widgets.HTML()
        self.word_text = widgets.HTML()
        self.out_image = widgets.Output()
        self.out_word = widgets.Output()
        self._busy = False
        controls = widgets.VBox([
            widgets.HBox([self.dataset, self.seed, self.method]),
            widgets.HBox([self.order, self.klass, self.position]),
            widgets.HBox([self.m, self.q, self.word_pick]),
            widgets.HBox([self.upload, self.back]),
        ])
        self.box = widgets.VBox([self.status, controls, self.iou_text, self.out_image, self.word_text, self.out_word])
        # class names the browser test (tests/browser) finds the parts by
        for part, name in ((self.box, "lvw-explorer"), (self.iou_text, "lvw-iou"), (self.out_image, "lvw-image"),
                           (self.word_text, "lvw-word-text"), (self.out_word, "lvw-word"), (self.status, "lvw-status")):
            part.add_class(name)
        if not self.choices:
            self.status.value = f"<b>{ex.empty_state_text(params_file, self.cache_dir)}</b>"
            controls.layout.display = "none"
            return
        self.dataset.observe(self._on_dataset, names="value")
        self.seed.observe(self._on_seed, names="value")
        for control in (self.method, self.order, self.klass):
            control.observe(self._on_selection, names="value")
        for control in (self.position, self.m, self.q):
            control.observe(self._on_redraw, names="value")
        self.word_pick.observe(self._on_word, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.back.on_click(self._on_back)
        self._on_dataset()

    # ------------------------------------------------------------------ callbacks
    def _on_dataset(self, *_: object) -> None:
        seeds = self.choices[self.dataset.value]
        self._busy = True
        self.seed.options = seeds
        self.seed.value = seeds[0]
        self._busy = False
        self._on_seed()

    def _on_seed(self, *_: object) -> None:
        if self._busy:
            return
        self.session = self.ex.Session.open(self.params, self.dataset.value, self.seed.value)
        names = self.session.class_names
        self._busy = True
        self.klass.options = [(n, i) for i, n in enumerate(names)]
        self.m.value = self.session.exp.run.eval.top_m
        self.q.value = self.session.exp.run.eval.quantile
        self._busy = False
        self._on_selection()

    def _on_selection(self, *_: object) -> None:
        if self._busy:
            return
        self.klass.disabled = self.order.value != "by class"
        indices = self.indices()
        self._busy = True
        self.position.max = max(len(indices) - 1, 0)
        self.position.value = min(self.position.value, self.position.max)
        self._busy = False
        self.update()

    def _on_redraw(self, *_: object) -> None:
        if not self._busy:
            self.update()

    def _on_word(self, *_: object) -> None:
        if not self._busy:
            self.update(keep_word=True)

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files or self.session is None:
            return
        data = bytes(files[0]["content"])
        sess = self.session
        image = self.ex.image_from_bytes(data, sess.size)
        with torch.no_grad():
            trunk = sess.prep.backbone.trunk(image[None])[0]
        cam = self.ex.gradcam_of(sess.base.model, trunk)
        self.upload_image = (image, trunk, cam)
        self.back.disabled = False
        self.update()

    def _on_back(self, *_: object) -> None:
        self.upload_image = None
        self.back.disabled = True
        self.update()

    # ------------------------------------------------------------------ state
    def indices(self) -> list[int]:
        """Test indices the image slider runs over, in order (may be empty)."""
        sess = self.session
        assert sess is not None
        labels = sess.prep.test_labels
        order = self.order.value
        if order == "by class":
            return torch.nonzero(labels == self.klass.value).flatten().tolist() if self.klass.value is not None else []
        if order in ("misclassified only", "sorted by IoU (lowest first)"):
            if sess.model(self.method.value) is None:
                return []
            summary = sess.summary(self.method.value)
            if order == "misclassified only":
                return torch.nonzero(summary.pred != labels).flatten().tolist()
            return torch.argsort(summary.iou, stable=True).tolist()
        return list(range(len(labels)))

    def current(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int | None, str] | None:
        """(image [3, S, S], trunk [Ct, h, w], Grad-CAM [hc, wc], label or None, caption) shown now."""
        sess = self.session
        assert sess is not None
        if self.upload_image is not None:
            image, trunk, cam = self.upload_image
            return image, trunk, cam, None, "your image"
        indices = self.indices()
        if not indices:
            return None
        i = indices[min(self.position.value, len(indices) - 1)]
        return (sess.test_image(i), sess.prep.test_feats[i, 0], sess.base.test_cams[i, 0],
                int(sess.prep.test_labels[i]), f"test image {i}")

    # ------------------------------------------------------------------ drawing
    def update(self, keep_word: bool = False) -> None:
        """Recompute and redraw everything for the current controls."""
        start = time.perf_counter()
        sess = self.session
        assert sess is not None
        method = self.method.value
        model = sess.model(method)
        self.view, self.word = None, None
        if model is None:
            self._clear(self.ex.empty_state_text(self.params_file, self.cache_dir, method))
            self.seconds = time.perf_counter() - start
            return
        shown = self.current()
        if shown is None:
            self._clear(f"no test image for the choice '{self.order.value}' with {METHOD_LABELS[method]}")
            self.seconds = time.perf_counter() - start
            return
        image, trunk, cam, label, caption = shown
        view = self.ex.image_view(model, trunk, cam, sess.size, self.m.value, self.q.value)
        self.view = view
        names = sess.class_names
        truth = f"true: {names[label]}, " if label is not None else ""
        self.status.value = f"{caption}: {truth}predicted by {METHOD_LABELS[method]}: {names[view['pred']]}"
        self.iou_text.value = (f"<b>IoU of the high-attention regions at q={self.q.value:.0f}: "
                               f"{view['iou']:.3f}</b>")
        self._sync_words(view, keep_word)
        with self.out_image:
            self.out_image.clear_output(wait=True)
            display(self._image_figure(image, view, method))
        self._draw_word(model, trunk, image, view)
        self.seconds = time.perf_counter() - start

    def _clear(self, text: str) -> None:
        self.status.value = f"<b>{text}</b>"
        self.iou_text.value = ""
        self.word_text.value = ""
        self.word_pick.options = []
        self.out_image.clear_output()
        self.out_word.clear_output()

    def _sync_words(self, view: dict, keep_word: bool) -> None:
        words = view["words"] or []
        unique = list(dict.fromkeys(words))
        options = [(f"#{rank + 1}: word {j}", j) for rank, j in enumerate(unique)]
        if [v for _, v in options] != [v for _, v in self.word_pick.options]:
            keep = self.word_pick.value if keep_word else None
            self._busy = True
            self.word_pick.options = options
            self.word_pick.value = keep if keep in unique else (unique[0] if unique else None)
            self._busy = False
        self.word_pick.disabled = not unique

    def _image_figure(self, image: torch.Tensor, view: dict, method: str) -> plt.Figure:
        img = to_numpy_image(image)
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        masks = view["mask_cam"].float() + 2 * view["mask_a_k"].float()
        panels = [
            (None, "image", None),
            (view["cam"], "base model's Grad-CAM", "jet"),
            (view["a_k"], f"{METHOD_LABELS[method]}: combined map", "jet"),
            (masks, f"masks at q={self.q.value:.0f}: IoU {view['iou']:.2f}\n(yellow both, teal CAM, green words)",
             "viridis"),
        ]
        for ax, (overlay, title, cmap) in zip(axes, panels, strict=True):
            ax.imshow(img)
            if overlay is not None:
                ax.imshow(overlay.numpy(), cmap=cmap, alpha=0.5, vmin=0, vmax=3 if cmap == "viridis" else 1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        plt.close(fig)
        return fig

    def _draw_word(self, model, trunk: torch.Tensor, image: torch.Tensor, view: dict) -> None:
        sess = self.session
        assert sess is not None
        word = self.word_pick.value
        if word is None or model.words is None:
            self.word_text.value = (f"{METHOD_LABELS[model.method]} has no words to drill into "
                                    "(it explains with one map).")
            self.out_word.clear_output()
            return
        names = sess.class_names
        info = self.ex.word_view(model, trunk, word, view["pred"], sess.size)
        src = sess.word_source(model.method, word)
        info.update(word=word, source=src)
        self.word = info
        weight = "no last-layer weight (ProtoTree: words route, leaves vote)" if info["weight"] is None else (
            f"weight to the predicted class ({names[view['pred']]}): {info['weight']:+.3f}")
        self.word_text.value = (
            f"<b>word {word}</b>: score on this image {info['score']:.3f}; {weight}; "
            f"pushed onto training image {src['index']} ({names[src['label']]}), patch ({src['row']}, {src['col']})"
        )
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
        axes[0].imshow(to_numpy_image(image))
        axes[0].imshow(info["map"].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[0].set_title(f"word {word} on this image", fontsize=9)
        axes[1].imshow(to_numpy_image(src["image"]))
        top, bottom, left, right = src["box"]
        axes[1].add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                        color="yellow", lw=2))
        axes[1].set_title(f"its training patch: {names[src['label']]}", fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        plt.close(fig)
        with self.out_word:
            self.out_word.clear_output(wait=True)
            display(fig)


def explorer(params_file: str = "params/quick.yaml", show: bool = True) -> Explorer:
    """Build (and display) the explorer of every trained model cached for ``params_file``."""
    app = Explorer(params_file)
    if show:
        display(app.box)
    return app
