"""The ipywidgets explorer (:func:`explorer`): every method, one word at a time, uploads.

:func:`explorer` reads trained models from the cache (:mod:`lvwlib.experiment.models`)
and never trains; with no trained model it says what to run. Its computations
live in :mod:`lvwlib.ui.explorer`; this module only wires controls and draws.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from lvwlib.experiment.config import experiment_from_params
from lvwlib.methods import label, names
from lvwlib.paper.viz import draw_box, show_map, to_numpy_image
from lvwlib.store.paths import resolve
from lvwlib.ui import explorer as ex
from lvwlib.ui import session

# --------------------------------------------------------------------------- the explorer

ORDERS = ("by index", "by class", "misclassified only", "sorted by IoU (lowest first)")


class Explorer:
    """Controls, callbacks and drawing of the model explorer (see :func:`explorer`).

    Every callback ends in :meth:`update`, which stores what it showed in
    ``self.view`` (arrays and numbers), ``self.word`` (the drilled-in word) and
    the time it took in ``self.seconds``; tests read those.
    """

    def __init__(self, params_file: str = "params/quick.yaml", params: dict | None = None) -> None:
        self.params_file = params_file
        self.params = params if params is not None else session.read_params(params_file)
        self.cache_dir = resolve(experiment_from_params(self.params).run.cache_dir)
        self.choices = ex.cached_choices(self.params)
        self.session: session.Session | None = None
        self.cache: ex.ExplorerCache | None = None  # per-method summaries and word sources of the session
        self.upload_image: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # image, trunk, cam
        self.view: dict | None = None
        self.word: dict | None = None
        self.seconds = 0.0
        style = {"description_width": "70px"}
        self.status = widgets.HTML()
        self.dataset = widgets.Dropdown(options=list(self.choices), description="dataset", style=style)
        self.seed = widgets.Dropdown(options=[], description="seed", style=style)
        self.method = widgets.Dropdown(options=[(label(m), m) for m in names()], value="lvw",
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
        opened = session.open(self.params, self.dataset.value, self.seed.value, progress=False, load=False)
        self.session, self.cache = opened, ex.ExplorerCache(opened)
        names = opened.class_names
        self._busy = True
        self.klass.options = [(n, i) for i, n in enumerate(names)]
        self.m.value = opened.exp.run.eval.top_m
        self.q.value = opened.exp.run.eval.quantile
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
        image = ex.image_from_bytes(data, self.cache.image_size)
        with torch.no_grad():
            trunk = sess.prep.backbone.trunk(image[None])[0]
        cam = ex.gradcam_of(sess.base.model, trunk)
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
        cache = self.cache
        assert cache is not None
        labels = cache.session.prep.test_labels
        order = self.order.value
        if order == "by class":
            return torch.nonzero(labels == self.klass.value).flatten().tolist() if self.klass.value is not None else []
        if order in ("misclassified only", "sorted by IoU (lowest first)"):
            if cache.model(self.method.value) is None:
                return []
            summary = cache.summary(self.method.value)
            if order == "misclassified only":
                return torch.nonzero(summary.pred != labels).flatten().tolist()
            return torch.argsort(summary.iou, stable=True).tolist()
        return list(range(len(labels)))

    def current(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int | None, str] | None:
        """(image [3, S, S], trunk [Ct, h, w], Grad-CAM [hc, wc], test index or None (an upload), caption)
        shown now; None when the chosen order has no image."""
        sess = self.session
        assert sess is not None
        if self.upload_image is not None:
            image, trunk, cam = self.upload_image
            return image, trunk, cam, None, "your image"
        indices = self.indices()
        if not indices:
            return None
        i = indices[min(self.position.value, len(indices) - 1)]
        return sess.prep.bundle.test[i][0], sess.prep.test_feats[i, 0], sess.base.test_cams[i, 0], i, f"test image {i}"

    # ------------------------------------------------------------------ drawing
    def update(self, keep_word: bool = False) -> None:
        """Recompute and redraw everything for the current controls."""
        start = time.perf_counter()
        cache = self.cache
        assert cache is not None
        method = self.method.value
        model = cache.model(method)
        self.view, self.word = None, None
        if model is None:
            self._clear(ex.empty_state_text(self.params_file, self.cache_dir, method))
            self.seconds = time.perf_counter() - start
            return
        shown = self.current()
        if shown is None:
            self._clear(f"no test image for the choice '{self.order.value}' with {label(method)}")
            self.seconds = time.perf_counter() - start
            return
        image, trunk, cam, index, caption = shown
        explained = (ex.explain_image(model, trunk, self.m.value) if index is None
                     else cache.explanation(method, index, self.m.value))  # in its Table 1 batch: the same IoU
        view = ex.image_view(explained, cam, cache.eval_size, self.q.value)
        self.view = view
        names = cache.session.class_names
        truth = "" if index is None else f"true: {names[int(cache.session.prep.test_labels[index])]}, "
        self.status.value = f"{caption}: {truth}predicted by {label(method)}: {names[view['pred']]}"
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
            (view["a_k"], f"{label(method)}: combined map", "jet"),
            (masks, f"masks at q={self.q.value:.0f}: IoU {view['iou']:.2f}\n(yellow both, teal CAM, green words)",
             "viridis"),
        ]
        for ax, (overlay, title, cmap) in zip(axes, panels, strict=True):
            ax.imshow(img)
            if overlay is not None:  # measured at the evaluation size, drawn over the whole image
                show_map(ax, img.shape[0], overlay, cmap=cmap, alpha=0.5, vmin=0, vmax=3 if cmap == "viridis" else 1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        plt.close(fig)
        return fig

    def _draw_word(self, model, trunk: torch.Tensor, image: torch.Tensor, view: dict) -> None:
        cache = self.cache
        assert cache is not None
        word = self.word_pick.value
        if word is None or model.words is None:
            self.word_text.value = (f"{model.label} has no words to drill into "
                                    "(it explains with one map).")
            self.out_word.clear_output()
            return
        names = cache.session.class_names
        info = ex.word_view(model, trunk, word, view["pred"], cache.image_size)
        src = cache.word_source(model.method, word)
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
        draw_box(axes[1], src["box"], "yellow", lw=2)
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
