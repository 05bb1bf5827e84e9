"""Round trips and corruption handling of generator.io.volumes."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import FileFormatError, InvalidInputError
from generator.io import read_volume, write_volume


def _volumes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "labels": rng.integers(0, 3, size=(7, 5, 4), dtype=np.uint8),
        "grey": rng.random((6, 4, 3)).astype(np.float32),
        "field64": rng.random((3, 5, 2)),
        "int32": rng.integers(-1000, 1000, size=(4, 4, 4)).astype(np.int32),
        "flat": rng.integers(0, 2, size=(9, 6), dtype=np.uint8),
    }


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".vti", ".tif"])
@pytest.mark.parametrize("name", list(_volumes()))
def test_round_trip_keeps_values_dtype_and_axis_order(tmp_path, suffix, name):
    volume = _volumes()[name]
    path = write_volume(tmp_path / f"v{suffix}", volume)
    back = read_volume(path)
    expected = volume[:, :, None] if (suffix == ".vti" and volume.ndim == 2) else volume
    assert back.shape == expected.shape
    assert back.dtype == expected.dtype
    np.testing.assert_array_equal(back, expected)


@pytest.mark.parametrize("cell_data", [False, True])
@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_vti_variants_round_trip(tmp_path, cell_data, encoding):
    volume = _volumes()["labels"]
    path = write_volume(tmp_path / "v.vti", volume, cell_data=cell_data, encoding=encoding, spacing=(1.0, 2.0, 0.5))
    text = path.read_bytes()
    assert (b"<CellData" in text) == cell_data
    assert (b"AppendedData" in text) == (encoding == "raw")
    assert b'Spacing="1.0 2.0 0.5"' in text
    np.testing.assert_array_equal(read_volume(path), volume)


def test_vti_header_is_what_paraview_expects(tmp_path):
    volume = np.zeros((4, 3, 2), dtype=np.uint8)
    volume[1, 2, 1] = 7
    text = write_volume(tmp_path / "v.vti", volume).read_bytes()
    assert b'<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">' in text
    assert b'WholeExtent="0 3 0 2 0 1"' in text
    start = text.index(b"<AppendedData")
    start = text.index(b"_", start) + 1
    assert int.from_bytes(text[start:start + 8], "little") == volume.size
    payload = text[start + 8:][: volume.size]
    # x varies fastest: index of (1, 2, 1) is 1 + 4 * (2 + 3 * 1)
    assert payload[1 + 4 * (2 + 3 * 1)] == 7 and sum(payload) == 7


def test_vti_reads_ascii_and_zlib_files(tmp_path):
    import zlib

    volume = np.arange(24, dtype=np.float32).reshape((4, 3, 2), order="F")
    ascii_file = tmp_path / "ascii.vti"
    ascii_file.write_text(
        '<?xml version="1.0"?><VTKFile type="ImageData" version="0.1" byte_order="LittleEndian">'
        '<ImageData WholeExtent="0 3 0 2 0 1" Origin="0 0 0" Spacing="1 1 1"><Piece Extent="0 3 0 2 0 1">'
        '<PointData Scalars="v"><DataArray type="Float32" Name="v" format="ascii">'
        + " ".join(str(v) for v in range(24)) + "</DataArray></PointData></Piece></ImageData></VTKFile>"
    )
    np.testing.assert_array_equal(read_volume(ascii_file), volume)

    body = zlib.compress(volume.ravel(order="F").tobytes())
    header = np.array([1, volume.nbytes, volume.nbytes, len(body)], dtype="<u4").tobytes()
    zfile = tmp_path / "zlib.vti"
    zfile.write_bytes(
        b'<?xml version="1.0"?><VTKFile type="ImageData" version="0.1" byte_order="LittleEndian" '
        b'compressor="vtkZLibDataCompressor"><ImageData WholeExtent="0 3 0 2 0 1" Origin="0 0 0" Spacing="1 1 1">'
        b'<Piece Extent="0 3 0 2 0 1"><CellData/><PointData Scalars="v"><DataArray type="Float32" Name="v" '
        b'format="appended" offset="0"/></PointData></Piece></ImageData><AppendedData encoding="raw">_'
        + header + body + b"</AppendedData></VTKFile>"
    )
    np.testing.assert_array_equal(read_volume(zfile), volume)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".vti", ".tif"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_raises_file_format_error(tmp_path, suffix, keep):
    volume = np.random.default_rng(1).random((8, 8, 8))
    path = write_volume(tmp_path / f"v{suffix}", volume)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FileFormatError, match="v" + suffix.replace(".", r"\.")):
        read_volume(path)


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "bad.vti"
    bad.write_bytes(b"\x00\x01not xml")
    with pytest.raises(FileFormatError, match="not a valid VTK XML"):
        read_volume(bad)
    with pytest.raises(FileFormatError, match="does not exist"):
        read_volume(tmp_path / "missing.npy")


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidInputError, match="unsupported volume format"):
        write_volume(tmp_path / "v.png", np.zeros((2, 2, 2)))
    with pytest.raises(InvalidInputError, match="2-D .* or 3-D"):
        write_volume(tmp_path / "v.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(FileFormatError, match="does not exist"):
        write_volume(tmp_path / "nope" / "v.npy", np.zeros((2, 2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_bool_volume_is_stored_as_uint8(tmp_path):
    volume = np.random.default_rng(2).random((5, 4, 3)) > 0.5
    back = read_volume(write_volume(tmp_path / "v.vti", volume))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, volume.astype(np.uint8))


def _vti_file(path, array_xml: bytes, tail: bytes = b"", compressor: bytes = b"") -> None:
    path.write_bytes(
        b'<?xml version="1.0"?><VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64"'
        + compressor + b'><ImageData WholeExtent="0 3 0 2 0 1" Origin="0 0 0" Spacing="1 1 1"><Piece Extent="0 3 0 2 0 1">'
        b'<PointData Scalars="v">' + array_xml + b"</PointData></Piece></ImageData>" + tail + b"</VTKFile>"
    )


def test_vti_reads_base64_layouts_that_vtk_writes(tmp_path):
    """VTK encodes an uncompressed block's header and data together, a compressed block's separately."""
    import base64
    import zlib

    volume = np.arange(24, dtype=np.float64).reshape((4, 3, 2), order="F") / 7
    raw = volume.ravel(order="F").tobytes()
    # appended, base64, uncompressed: '_' + b64(header + data)
    block = base64.b64encode(np.array([len(raw)], "<u8").tobytes() + raw)
    _vti_file(tmp_path / "a.vti", b'<DataArray type="Float64" Name="v" format="appended" offset="0"/>',
              b'<AppendedData encoding="base64">_' + block + b"</AppendedData>")
    np.testing.assert_array_equal(read_volume(tmp_path / "a.vti"), volume)
    # inline binary, zlib in two blocks: b64(header) + b64(block1 + block2)
    blocks = [zlib.compress(raw[:128]), zlib.compress(raw[128:])]
    header = np.array([2, 128, len(raw) - 128, *map(len, blocks)], "<u8").tobytes()
    text = base64.b64encode(header) + base64.b64encode(b"".join(blocks))
    _vti_file(tmp_path / "b.vti", b'<DataArray type="Float64" Name="v" format="binary">' + text + b"</DataArray>",
              compressor=b' compressor="vtkZLibDataCompressor"')
    np.testing.assert_array_equal(read_volume(tmp_path / "b.vti"), volume)
    _vti_file(tmp_path / "c.vti", b'<DataArray type="Float64" Name="v" format="binary">' + text[:-20] + b"</DataArray>",
              compressor=b' compressor="vtkZLibDataCompressor"')
    with pytest.raises(FileFormatError, match="truncated"):
        read_volume(tmp_path / "c.vti")


def test_vti_interoperates_with_vtk_when_installed(tmp_path):
    vtk = pytest.importorskip("vtk")
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    volume = np.random.default_rng(3).random((9, 7, 5)).astype(np.float32)
    for cell_data in (False, True):
        for encoding in ("raw", "base64"):
            path = write_volume(tmp_path / f"ours_{cell_data}_{encoding}.vti", volume, cell_data=cell_data, encoding=encoding)
            reader = vtk.vtkXMLImageDataReader()
            reader.SetFileName(str(path))
            reader.Update()
            image = reader.GetOutput()
            arrays = image.GetCellData() if cell_data else image.GetPointData()
            dims = [d - 1 for d in image.GetDimensions()] if cell_data else list(image.GetDimensions())
            back = vtk_to_numpy(arrays.GetArray("volume")).reshape(dims[::-1]).transpose(2, 1, 0)
            np.testing.assert_array_equal(back, volume)
    image = vtk.vtkImageData()
    image.SetDimensions(*volume.shape)
    scalars = numpy_to_vtk(volume.transpose(2, 1, 0).ravel(), deep=True)
    scalars.SetName("v")
    image.GetPointData().SetScalars(scalars)
    writer = vtk.vtkXMLImageDataWriter()  # VTK's defaults: appended, base64, zlib
    writer.SetFileName(str(tmp_path / "vtk.vti"))
    writer.SetInputData(image)
    writer.Write()
    np.testing.assert_array_equal(read_volume(tmp_path / "vtk.vti"), volume)


def test_tif_pages_of_different_sizes_are_refused_not_read_as_their_first_page(tmp_path):
    import tifffile

    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((4, 5), np.uint8))
        tif.write(np.ones((4, 5), np.uint8))
        tif.write(np.ones((6, 5), np.uint8))
    with pytest.raises(FileFormatError, match=r"pages differ in size \(page 0 is \(4, 5\), page 2 is \(6, 5\)\)"):
        read_volume(path)
