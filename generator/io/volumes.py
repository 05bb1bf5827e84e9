"""Read and write voxel volumes: ``.npy``, ``.npz``, ``.vti`` (VTK ImageData) and ``.tif`` stacks.

Volumes are numpy arrays indexed ``(x, y, z)``. Formats:

* ``.npy`` -- :func:`numpy.save` (no pickles).
* ``.npz`` -- one array named ``volume`` (on reading, ``volume`` or ``labels``
  or the only array in the file).
* ``.vti`` -- VTK XML ImageData, opened by ParaView. Written by hand (no VTK
  dependency): one scalar array named ``volume`` as point data (default, one
  point per voxel) or cell data, in ``raw`` appended binary (default) or
  inline ``base64``. The reader also takes what VTK/ParaView write: ``ascii``,
  inline or appended base64, and zlib-compressed arrays. x varies fastest, as VTK expects.
* ``.tif`` -- a multi-page TIFF stack (tifffile), one page per z layer, each
  page a ``(y, x)`` image, as ImageJ/Fiji show it. The shape is kept.
* ``.txt`` -- GraSPI's own text input format (phase labels only; see
  :mod:`generator.io.graspi`).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from generator.errors import FileFormatError, InvalidInputError
from generator.io.atomic import atomic_path
from generator.io.graspi import read_graspi, write_graspi

SUFFIXES = (".npy", ".npz", ".vti", ".tif", ".tiff", ".txt")

_VTK_TYPES = {
    "Int8": np.int8, "UInt8": np.uint8, "Int16": np.int16, "UInt16": np.uint16,
    "Int32": np.int32, "UInt32": np.uint32, "Int64": np.int64, "UInt64": np.uint64,
    "Float32": np.float32, "Float64": np.float64,
}
_VTK_NAMES = {np.dtype(v): k for k, v in _VTK_TYPES.items()}


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(f"unsupported volume format {path.suffix or '(none)'!r} for {path}; use one of {', '.join(SUFFIXES)}")
    return suffix


def _as_volume(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise InvalidInputError(f"a volume must be 2-D (x, y) or 3-D (x, y, z), got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if np.dtype(array.dtype).newbyteorder("<") not in _VTK_NAMES:
        raise InvalidInputError(f"unsupported volume dtype {array.dtype}")
    return array


# ----------------------------------------------------------------------------- writing

def write_volume(path: str | os.PathLike[str], array: np.ndarray, *, spacing: float | tuple[float, float, float] = 1.0,
                 cell_data: bool = False, encoding: str = "raw") -> Path:
    """Write a volume atomically; the format follows the suffix.

    Parameters
    ----------
    path
        Destination ending in ``.npy``, ``.npz``, ``.vti``, ``.tif`` or ``.tiff``.
    array
        Volume ``(X, Y)`` or ``(X, Y, Z)``; bool is stored as ``uint8``.
    spacing
        Voxel size (``.vti`` only), one value or one per axis.
    cell_data
        ``.vti`` only: store the values as cell data (one cell per voxel)
        instead of point data.
    encoding
        ``.vti`` only: ``"raw"`` (appended binary) or ``"base64"`` (inline).

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    suffix = _suffix(path)
    array = _as_volume(array)
    if suffix == ".txt":  # GraSPI's text format (labels only)

        return write_graspi(path, array)
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        elif suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, volume=array)
        elif suffix == ".vti":
            tmp.write_bytes(_vti_bytes(array, spacing=spacing, cell_data=cell_data, encoding=encoding))
        else:
            import tifffile

            tifffile.imwrite(tmp, np.ascontiguousarray(array.T), photometric="minisblack", metadata={"axes": "ZYX" if array.ndim == 3 else "YX"})
    return path


def _vti_bytes(array: np.ndarray, *, spacing: float | tuple[float, float, float], cell_data: bool, encoding: str) -> bytes:
    if encoding not in ("raw", "base64"):
        raise InvalidInputError(f"encoding must be 'raw' or 'base64', got {encoding!r}")
    if array.ndim == 2:
        array = array[:, :, None]
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    dtype = array.dtype.newbyteorder("<")
    payload = np.ascontiguousarray(array.astype(dtype, copy=False).ravel(order="F")).tobytes()
    block = np.array([len(payload)], dtype="<u8").tobytes() + payload
    shape = array.shape
    extent = " ".join(f"0 {n if cell_data else n - 1}" for n in shape)
    kind = "CellData" if cell_data else "PointData"
    if encoding == "raw":
        array_xml = f'<DataArray type="{_VTK_NAMES[np.dtype(dtype)]}" Name="volume" format="appended" offset="0"/>'
        tail = b'  <AppendedData encoding="raw">\n   _' + block + b"\n  </AppendedData>\n"
    else:
        array_xml = (f'<DataArray type="{_VTK_NAMES[np.dtype(dtype)]}" Name="volume" format="binary">\n'
                     f"          {base64.b64encode(block).decode('ascii')}\n        </DataArray>")
        tail = b""
    head = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
        f'  <ImageData WholeExtent="{extent}" Origin="0 0 0" Spacing="{spacing[0]!r} {spacing[1]!r} {spacing[2]!r}">\n'
        f'    <Piece Extent="{extent}">\n'
        f'      <{kind} Scalars="volume">\n'
        f"        {array_xml}\n"
        f"      </{kind}>\n"
        "    </Piece>\n"
        "  </ImageData>\n"
    )
    return head.encode("ascii") + tail + b"</VTKFile>\n"


# ----------------------------------------------------------------------------- reading

def read_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a volume written by :func:`write_volume` (or by numpy, ParaView, ImageJ).

    Parameters
    ----------
    path
        A ``.npy``, ``.npz``, ``.vti``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    np.ndarray
        The volume, indexed ``(x, y[, z])`` (``.vti`` files are always 3-D).

    Raises
    ------
    FileFormatError
        If the file is missing, truncated, corrupt or holds no usable volume.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileFormatError(f"volume file {path} does not exist")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = list(data.files)
                for key in ("volume", "labels"):
                    if key in names:
                        return data[key]
                if len(names) == 1:
                    return data[names[0]]
                raise FileFormatError(f"{path}: .npz holds arrays {names}; expected one named 'volume'")
        if suffix == ".vti":
            return _read_vti(path.read_bytes(), path)
        if suffix == ".txt":
            return read_graspi(path)
        return _read_tif(path)
    except FileFormatError:
        raise
    except Exception as exc:  # numpy / zipfile / tifffile report corruption in many ways
        raise FileFormatError(f"{path}: cannot read {suffix} volume (truncated or corrupt file?): {exc}") from exc


def _read_tif(path: Path) -> np.ndarray:
    import tifffile

    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
            if ends and max(ends) > size:
                raise FileFormatError(f"{path}: image data ends past the end of the file (truncated file?)")
        shapes = [tuple(page.shape) for page in tif.pages]
        if len(set(shapes)) > 1:  # tifffile would return the first run of equal pages only, as if it were the stack
            odd = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
            raise FileFormatError(f"{path}: the stack's pages differ in size (page 0 is {shapes[0]}, page {odd} is {shapes[odd]}); "
                                  "every z layer must have the same size")
        array = tif.asarray()
        meta = tif.shaped_metadata
    if meta and "shape" in meta[0] and tuple(meta[0]["shape"]) != array.shape:
        raise FileFormatError(f"{path}: stack holds shape {array.shape}, its metadata says {tuple(meta[0]['shape'])} (truncated file?)")
    return np.ascontiguousarray(array.T)


def _read_vti(data: bytes, path: Path) -> np.ndarray:
    appended_at = data.find(b"<AppendedData")
    header = data[:appended_at] + b"</VTKFile>" if appended_at >= 0 else data
    try:
        root = ET.fromstring(header)
    except ET.ParseError as exc:
        raise FileFormatError(f"{path}: not a valid VTK XML file ({exc})") from exc
    if root.tag != "VTKFile" or root.get("type") != "ImageData":
        raise FileFormatError(f"{path}: not a VTK ImageData file")
    if root.get("byte_order", "LittleEndian") != "LittleEndian":
        raise FileFormatError(f"{path}: big-endian .vti files are not supported")
    header_type = np.dtype("<u8" if root.get("header_type", "UInt32") == "UInt64" else "<u4")
    compressed = root.get("compressor") is not None
    if compressed and "ZLib" not in root.get("compressor", ""):
        raise FileFormatError(f"{path}: unsupported compressor {root.get('compressor')}")
    image = root.find("ImageData")
    piece = image.find("Piece") if image is not None else None
    if piece is None:
        raise FileFormatError(f"{path}: no ImageData/Piece element")
    extent = [int(v) for v in (piece.get("Extent") or image.get("WholeExtent", "")).split()]
    if len(extent) != 6:
        raise FileFormatError(f"{path}: bad Extent")
    points = tuple(extent[2 * i + 1] - extent[2 * i] + 1 for i in range(3))
    for kind, shape in (("PointData", points), ("CellData", tuple(max(n - 1, 1) for n in points))):
        block = piece.find(kind)
        arrays = block.findall("DataArray") if block is not None else []
        if arrays:
            wanted = block.get("Scalars")
            element = next((a for a in arrays if a.get("Name") == wanted), arrays[0])
            break
    else:
        raise FileFormatError(f"{path}: no point or cell data array")
    if int(element.get("NumberOfComponents", "1")) != 1:
        raise FileFormatError(f"{path}: array {element.get('Name')!r} has more than one component")
    type_name = element.get("type")
    if type_name not in _VTK_TYPES:
        raise FileFormatError(f"{path}: unsupported data type {type_name!r}")
    dtype = np.dtype(_VTK_TYPES[type_name]).newbyteorder("<")
    count = int(np.prod(shape))
    fmt = element.get("format", "ascii")
    if fmt == "ascii":
        values = np.array((element.text or "").split(), dtype=dtype)
    else:
        encoded = True
        if fmt == "binary":
            raw = "".join((element.text or "").split()).encode("ascii")
        elif fmt == "appended":
            if appended_at < 0:
                raise FileFormatError(f"{path}: array is appended but the file has no AppendedData (truncated?)")
            tag_end = data.find(b">", appended_at)
            start = data.find(b"_", tag_end) + 1
            if tag_end < 0 or start <= 0:
                raise FileFormatError(f"{path}: malformed AppendedData (truncated?)")
            encoded = b'encoding="base64"' in data[appended_at:tag_end]
            raw = data[start + int(element.get("offset", "0")):]
        else:
            raise FileFormatError(f"{path}: unknown DataArray format {fmt!r}")
        payload = _decode_vtk_block(raw, header_type, compressed, encoded, path)
        if len(payload) < count * dtype.itemsize:
            raise FileFormatError(f"{path}: data array holds {len(payload)} bytes, expected {count * dtype.itemsize} (truncated file?)")
        values = np.frombuffer(payload, dtype=dtype, count=count)
    if values.size != count:
        raise FileFormatError(f"{path}: data array holds {values.size} values, expected {count} for extent {extent}")
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape, order="F")


def _decode_vtk_block(raw: bytes, header_type: np.dtype, compressed: bool, encoded: bool, path: Path) -> bytes:
    """The bytes of one VTK data block: ``[header][data]``, raw or base64, plain or zlib blocks.

    VTK base64-encodes an uncompressed block's header and data together, but a
    compressed block's header and its data separately; ``read(start, n)``
    returns ``n`` decoded bytes from byte (raw) or character (base64) ``start``.
    """
    size = header_type.itemsize

    def read(start: int, n: int) -> bytes:
        if not encoded:
            chunk = raw[start:start + n]
        else:
            text = raw[start:start + 4 * math.ceil(n / 3)]
            try:
                chunk = base64.b64decode(text + b"=" * (-len(text) % 4), validate=False)[:n]
            except (ValueError, binascii.Error) as exc:
                raise FileFormatError(f"{path}: corrupt base64 data ({exc})") from exc
        if len(chunk) < n:
            raise FileFormatError(f"{path}: data block holds {len(chunk)} of {n} bytes (truncated file?)")
        return chunk

    def header(n: int) -> np.ndarray:
        return np.frombuffer(read(0, n * size), dtype=header_type).astype(np.int64)

    if not compressed:
        nbytes = int(header(1)[0])
        return read(0, size + nbytes)[size:] if encoded else read(size, nbytes)
    n_blocks = int(header(1)[0])
    sizes = header(3 + n_blocks)[3:]
    head_len = (3 + n_blocks) * size
    body = read(4 * math.ceil(head_len / 3) if encoded else head_len, int(sizes.sum()))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    try:
        return b"".join(zlib.decompress(body[offsets[i]:offsets[i + 1]]) for i in range(n_blocks))
    except zlib.error as exc:
        raise FileFormatError(f"{path}: corrupt compressed data ({exc})") from exc
