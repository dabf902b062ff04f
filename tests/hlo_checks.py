"""Reading compiled HLO: which instructions make buffers of a given array type (tests' helper)."""

import re

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*(\S+)\s+([\w-]+)\((.*)$")


def entry_lines(hlo: str) -> list[str]:
    lines = hlo.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ENTRY"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("}"))
    return lines[start + 1:end]


def table_buffer_problems(hlo: str, table_type: str) -> list[str]:
    """Lines that make (or could make) a buffer of ``table_type`` (e.g. ``"f32[100000,8]"``) other than
    the donated parameter itself and one scatter straight into it."""
    problems = []
    for line in hlo.splitlines():  # anywhere, even inside fusions
        m = _INSTR.match(line)
        if m and m.group(2).startswith(table_type) and m.group(3) in ("copy", "broadcast"):
            problems.append(line.strip())
    params, others = [], []
    for line in entry_lines(hlo):
        m = _INSTR.match(line)
        if not m or not m.group(2).startswith(table_type + "{"):
            continue
        (params if m.group(3) == "parameter" else others).append(m)
    assert len(params) == 1, params
    param = params[0].group(1)
    # The only other table-sized value may be the update itself: one scatter straight into the parameter.
    for m in others:
        is_update = "scatter" in m.group(1) and m.group(4).startswith(f"%{param},")
        if not is_update or len(others) > 1:
            problems.append(m.group(0).strip())
    return problems


def scatters_into(hlo: str, table_type: str) -> int:
    """How many scatter instructions produce a ``table_type`` value."""
    return sum(" scatter(" in line for line in hlo.splitlines() if table_type in line.split("=", 1)[-1][:60])
