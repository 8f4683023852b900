"""The resource picker: image, cpu/mem (and accelerator) sliders bounded by what is allocatable."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..client import Client, SessionInfo
from ..workspace.loop import BackgroundLoop
from ._base import WidgetBase, on_click
from ._data import (
    FALLBACK_IMAGE,
    Preset,
    ResourceOptions,
    SlotSpec,
    fetch_resource_options,
    format_bytes,
    slot_text,
    slot_widget_value,
)

__all__ = ["ResourcePicker"]

ChangeCallback = Callable[[dict[str, str]], object]


def _slider(spec: SlotSpec) -> w.ValueWidget:
    style = {"description_width": "110px"}
    layout = w.Layout(width="460px")
    maximum = max(spec.maximum, spec.minimum)
    common: dict[str, Any] = {
        "description": spec.description,
        "style": style,
        "layout": layout,
        "disabled": not spec.available,
        "continuous_update": False,
    }
    if spec.kind == "int":
        return w.IntSlider(
            value=int(spec.minimum), min=int(spec.minimum), max=int(maximum), step=1, **common
        )
    return w.FloatSlider(
        value=spec.minimum,
        min=spec.minimum,
        max=maximum,
        step=spec.step,
        readout_format=".2f" if spec.kind == "bytes" else ".1f",
        **common,
    )


class ResourcePicker(WidgetBase):
    """Choose an image and resources within what ``/resource/check-presets`` says is allocatable.

    ``value`` is the chosen resource slots as ``-r`` strings (``{"cpu": "2", "mem": "4g"}``);
    :meth:`to_flags` gives ``["cpu=2", "mem=4g"]`` for ``%backendai run -r ...``, and
    :meth:`apply_to_kernel` hands the choice to the "Backend.AI Python" kernel (or to
    ``%backendai config``) for its next session. "Start session" creates a session directly.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        loop: BackgroundLoop | None = None,
        image: str | None = None,
    ) -> None:
        super().__init__(client, loop)
        self.options: ResourceOptions | None = None
        self.last_session: SessionInfo | None = None
        self._specs: dict[str, SlotSpec] = {}
        self._sliders: dict[str, w.ValueWidget] = {}
        self._callbacks: list[ChangeCallback] = []
        self._quiet = False
        self._initial_image = image
        self.image_box = w.Combobox(
            value=image or FALLBACK_IMAGE,
            options=[image or FALLBACK_IMAGE],
            description="image",
            ensure_option=False,
            style={"description_width": "110px"},
            layout=w.Layout(width="460px"),
        )
        self.preset = w.Dropdown(
            options=[("custom", "")],
            value="",
            description="preset",
            style={"description_width": "110px"},
            layout=w.Layout(width="460px"),
        )
        self.sliders_box = w.VBox([])
        self.bounds_html = w.HTML()
        self.flags_text = w.Text(
            description="%backendai",
            disabled=True,
            style={"description_width": "110px"},
            layout=w.Layout(width="460px"),
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.apply_button = w.Button(description="Apply to kernel", icon="check")
        self.start_button = w.Button(
            description="Start session", icon="play", button_style="primary"
        )
        on_click(self.refresh_button, self.refresh)
        on_click(self.apply_button, self._apply_clicked)
        on_click(self.start_button, self.start_session)
        self.image_box.observe(self._changed, names="value")
        self.preset.observe(self._preset_chosen, names="value")
        self.widget = self._layout()
        self.widget.add_class("bai-resource-picker")
        self.refresh()

    def _layout(self) -> w.VBox:
        """The picker's rows, top to bottom."""
        return w.VBox(
            [
                w.HTML("<b>Backend.AI resources</b>"),
                self.preset,
                self.image_box,
                self.sliders_box,
                self.bounds_html,
                self.flags_text,
                w.HBox([self.refresh_button, self.apply_button, self.start_button]),
                self.status,
            ]
        )

    # -- the choice --------------------------------------------------------------------------------

    @property
    def image(self) -> str:
        return str(self.image_box.value).strip() or FALLBACK_IMAGE

    @property
    def value(self) -> dict[str, str]:
        """The chosen resource slots, e.g. ``{"cpu": "2", "mem": "4g", "cuda.shares": "0.5"}``."""
        out: dict[str, str] = {}
        for name, slider in self._sliders.items():
            spec = self._specs[name]
            if slider.disabled and not spec.required:
                continue
            text = slot_text(spec, float(slider.value))
            if text is not None:
                out[name] = text
        return out

    @property
    def resource_opts(self) -> dict[str, str]:
        """``{"shmem": ...}`` when the chosen preset sets shared memory."""
        chosen = self._chosen_preset()
        if chosen is None or chosen.shared_memory is None:
            return {}
        from ..client.parsing import format_binary_size

        return {"shmem": format_binary_size(chosen.shared_memory)}

    def to_flags(self) -> list[str]:
        """``["cpu=2", "mem=4g"]``: each item is one ``-r`` flag of ``%backendai run``."""
        return [f"{k}={v}" for k, v in {**self.value, **self.resource_opts}.items()]

    def run_args(self) -> str:
        """``"-r cpu=2 -r mem=4g"``, to paste after ``%backendai run``."""
        return " ".join(f"-r {f}" for f in self.to_flags())

    def config_line(self) -> str:
        """The ``%backendai config`` line that selects this image and these resources."""
        return f"%backendai config image={self.image} resources={','.join(self.to_flags())}"

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(picker.value)`` whenever the image or a resource changes."""
        self._callbacks.append(callback)

    def set(self, **values: float | str) -> None:
        """Move sliders: ``picker.set(cpu=2, mem="4g")`` (mem in GiB as a number, or a size)."""
        self._quiet = True
        try:
            for name, amount in values.items():
                slot = name.replace("_", ".")
                if slot not in self._sliders:
                    raise KeyError(f"no resource slot {slot!r}; known: {', '.join(self._sliders)}")
                spec = self._specs[slot]
                position = (
                    slot_widget_value(spec, amount) if isinstance(amount, str) else float(amount)
                )
                self._sliders[slot].value = int(position) if spec.kind == "int" else position
            self.preset.value = ""
        finally:
            self._quiet = False
        self._changed()

    # -- actions ---------------------------------------------------------------------------------

    def refresh(self) -> concurrent.futures.Future[ResourceOptions]:
        """Re-read slots, allocatable amounts, presets and images (in the background)."""

        async def load() -> ResourceOptions:
            client = await self.client()
            options = await fetch_resource_options(client)
            self._show(options)
            return options

        return self._submit(load(), "loading allocatable resources…")

    def start_session(self) -> concurrent.futures.Future[SessionInfo]:
        """Create a session with the chosen image and resources; ``last_session`` records it."""
        image, resources, opts = self.image, self.value, self.resource_opts

        async def start() -> SessionInfo:
            client = await self.client()
            info = await client.sessions.create(
                image, resources=resources, resource_opts=opts or None, reuse_if_exists=False
            )
            self.last_session = info
            self._info(f"session {info.name} is {info.status or 'starting'} ({info.id})")
            return info

        flags = " ".join(self.to_flags())
        return self._submit(start(), f"starting a session ({image}, {flags})…")

    def apply_to_kernel(self) -> str:
        """Hand the choice to the kernel for its next session; return what was done.

        In the "Backend.AI Python (remote GPU)" kernel this updates its session settings, as
        ``%backendai config set image=... resources=...`` does there. In any other kernel there is
        no kernel session to configure: the text says which ``-r`` flags to pass instead.
        """
        from IPython import get_ipython

        shell = get_ipython()
        resources = ",".join(self.to_flags())
        kernel = getattr(shell, "kernel", None)
        workspace = getattr(kernel, "workspace", None)  # only the proxy kernel has one
        if workspace is not None:
            change = workspace.configure([f"image={self.image}", f"resources={resources}"])
            later = (
                " (for the next session: %backendai kernel stop first)"
                if change.live_session else ""
            )
            return f"kernel configured: image={self.image} resources={resources}{later}"
        return (
            f"not the Backend.AI kernel: use %backendai run {self.run_args()} ... here, "
            f"or {self.config_line()} in the Backend.AI kernel"
        )

    def _apply_clicked(self) -> None:
        try:
            self._info(self.apply_to_kernel())
        except Exception as e:  # shown, not raised: a button callback has no cell to fail
            self._error(f"{type(e).__name__}: {e}")

    # -- internals -------------------------------------------------------------------------------

    def _chosen_preset(self) -> Preset | None:
        if self.options is None or not self.preset.value:
            return None
        return next((p for p in self.options.presets if p.name == self.preset.value), None)

    def _show(self, options: ResourceOptions) -> None:
        """Rebuild the controls for freshly fetched options (keeps what still fits)."""
        previous = self.value
        self.options = options
        self._quiet = True
        try:
            self._specs = {s.name: s for s in options.specs}
            self._sliders = {s.name: _slider(s) for s in options.specs}
            for slider in self._sliders.values():
                slider.observe(self._slider_moved, names="value")
            self.sliders_box.children = list(self._sliders.values())
            images = list(dict.fromkeys([self.image, *options.images]))
            if self._initial_image is None and self.image == FALLBACK_IMAGE and options.images:
                images = list(options.images)
            self.image_box.options = images
            labels: list[tuple[str, str]] = [("custom", "")]
            for p in options.presets:
                note = "" if p.allocatable else "  (not allocatable now)"
                labels.append((f"{p.name}: {self._preset_summary(p)}{note}", p.name))
            self.preset.options = labels
            self.bounds_html.value = self._bounds_text(options)
            if previous:
                self._set_values(previous)
                self.preset.value = ""
            else:
                default = next(
                    (p for p in options.presets if p.allocatable and self._fits(p)), None
                )
                self.preset.value = default.name if default else ""
                if default:
                    self._set_values(default.slots)
        finally:
            self._quiet = False
        self._info("ready")
        self._changed()

    def _set_values(self, values: dict[str, str] | Any) -> None:
        for name, slider in self._sliders.items():
            spec = self._specs[name]
            text = values.get(name)
            position = slot_widget_value(spec, text) if text else spec.minimum
            slider.value = int(position) if spec.kind == "int" else position

    def _fits(self, preset: Preset) -> bool:
        for name, text in preset.slots.items():
            spec = self._specs.get(name)
            if spec is None:
                continue
            position = slot_widget_value(spec, text)
            if position > spec.maximum or (position > 0 and not spec.available):
                return False
        return True

    @staticmethod
    def _preset_summary(preset: Preset) -> str:
        parts = []
        for name, text in preset.slots.items():
            if name == "mem":
                parts.append(f"mem {format_bytes(int(slot_widget_value(_MEM, text) * 2**30))}")
            else:
                parts.append(f"{name} {text}")
        return ", ".join(parts)

    @staticmethod
    def _bounds_text(options: ResourceOptions) -> str:
        parts = []
        for spec in options.specs:
            bound = options.bounds.get(spec.name)
            if bound is None:
                parts.append(f"{spec.name} unlimited")
            elif spec.kind == "bytes":
                parts.append(f"{spec.name} {format_bytes(int(bound))}")
            else:
                parts.append(f"{spec.name} {bound.normalize():f}")
        return "<small>allocatable now: " + " · ".join(parts) + "</small>"

    def _preset_chosen(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        chosen = self._chosen_preset()
        if chosen is None:
            return
        if not chosen.allocatable or not self._fits(chosen):
            self._error(f"preset {chosen.name} does not fit what is allocatable now")
            return
        self._quiet = True
        try:
            self._set_values(chosen.slots)
        finally:
            self._quiet = False
        self._info(f"preset {chosen.name}")
        self._changed()

    def _slider_moved(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._quiet = True
        try:
            self.preset.value = ""  # moved by hand: no longer the preset
        finally:
            self._quiet = False
        self._changed()

    def _changed(self, change: dict[str, Any] | None = None) -> None:
        if self._quiet:
            return
        self.flags_text.value = f"run {self.run_args()}"
        value = self.value
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception as e:
                self._error(f"on_change callback failed: {type(e).__name__}: {e}")


_MEM = SlotSpec("mem", "bytes", 0.25, 0.0, 0.25, True, "mem")
