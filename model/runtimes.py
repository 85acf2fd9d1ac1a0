"""The engines that turn a normalised input batch into anomaly maps.

Everything around the maps (fitting images into the input, image scores, calibration, maps back at
each image's size) is the one scoring path in `model.scoring`, whatever engine computed the maps.
An engine only runs the network: torch on the checkpoint's weights, or ONNX Runtime or OpenVINO on
a model written by `lineguard export` (see `model.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from model.devices import autocast
from model.errors import ExportError

if TYPE_CHECKING:
    from model.scoring import TeacherStudent

TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
RUNTIMES = (TORCH, ONNXRUNTIME, OPENVINO)
# The exported graph's input and output names.
INPUT_NAME = "batch"
OUTPUT_NAME = "anomaly_maps"


class MapRuntime(Protocol):
    """(B,3,H,W) float32 normalised input on `device` -> (B,H,W) float32 anomaly maps on `device`."""

    name: str
    device: torch.device
    precision: str

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor: ...


class TorchMaps:
    """The checkpoint's own network, on any torch device, at fp32 or under bf16 autocast."""

    name = TORCH

    def __init__(self, network: TeacherStudent, device: torch.device, precision: str) -> None:
        # Eval mode always: BatchNorm in training mode would score a frame by its batch mates.
        self.network = network.to(device).eval()
        self.device = device
        self.precision = precision
        # oneDNN's (CPU) and cuDNN's (bf16) convolutions are fastest in channels-last.
        self._channels_last = device.type == "cpu" or precision == "bf16"
        if self._channels_last:
            self.network.to(memory_format=torch.channels_last)

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self.network.anomaly_maps(batch)


class OnnxRuntimeMaps:
    """An exported ONNX model run by ONNX Runtime on the CPU (fp32, or int8 where quantised)."""

    name = ONNXRUNTIME

    def __init__(self, model_file: Path, precision: str, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own, unexported error types
            raise ExportError(f"{model_file}: ONNX Runtime cannot load it ({error})") from error
        self.device = torch.device("cpu")
        self.precision = precision

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        return torch.from_numpy(self._session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0])


class OpenVinoMaps:
    """An exported model (OpenVINO IR or ONNX) compiled by OpenVINO for the CPU. bf16 is OpenVINO's
    inference precision: weights stay fp32 in the file, the CPU plugin computes in bf16."""

    name = OPENVINO

    def __init__(self, model_file: Path, precision: str, threads: int | None = None) -> None:
        import openvino

        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = openvino.Core().compile_model(str(model_file), "CPU", config)
        except Exception as error:  # openvino raises RuntimeError for every kind of failure
            raise ExportError(f"{model_file}: OpenVINO cannot load it ({error})") from error
        self._request = self._compiled.create_infer_request()
        self.device = torch.device("cpu")
        self.precision = precision

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        result = self._request.infer({INPUT_NAME: inputs})
        return torch.from_numpy(np.array(result[self._compiled.output(OUTPUT_NAME)], dtype=np.float32))
