"""pga_tf.machine: the CPU description every benchmark record carries."""

from pga_tf import machine

TWO_PROCESSORS = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse avx avx2 fma avx512f avx512bw

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 99
model name\t: Other
flags\t\t: fpu amx_tile
"""


def test_first_processor_block_only(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(TWO_PROCESSORS)
    info = machine.cpuinfo(str(path))
    assert info["processor"] == "0" and info["cpu family"] == "25" and info["model name"] == "AMD EPYC"
    assert machine.cpu_model(str(path)) == "AMD EPYC (family 25, model 17, avx2, avx512f)"


def test_missing_file_falls_back_to_platform(tmp_path):
    assert machine.cpuinfo(str(tmp_path / "absent")) == {}
    assert machine.cpu_model(str(tmp_path / "absent"))  # platform's name: never empty on a real machine


def test_precision_flags_name_the_16_bit_extensions(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(TWO_PROCESSORS.replace("avx512bw", "avx512bw avx512_bf16", 1))
    assert machine.precision_flags(str(path)) == ["avx2", "avx512f", "avx512_bf16"]
    assert machine.precision_flags(str(tmp_path / "absent")) == []
