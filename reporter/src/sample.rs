//! Coverage built in code for the unit tests: three machines, branches,
//! C++ functions, odd file names.

use covnet_merger::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};

pub(crate) fn line(count: i64, by: &[i64]) -> LineCoverage {
    LineCoverage {
        count,
        by_capture: by.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn branch(block: u32, branch: u32, taken: Option<i64>, by: &[Option<i64>]) -> Branch {
    Branch {
        block,
        branch,
        taken,
        by_capture: by.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn function(
    name: &str,
    demangled: &str,
    line: u32,
    end: u32,
    by: &[i64],
) -> FunctionCoverage {
    FunctionCoverage {
        name: name.into(),
        demangled: demangled.into(),
        start_line: line,
        end_line: end,
        count: by.iter().sum(),
        by_capture: by.to_vec(),
        ..Default::default()
    }
}

/// `/proj/src/server.c` (lines 1-9), `/proj/src/net/<odd & "name">.cc`,
/// `/proj/include/util.h`; machines `web`, `client`, `db`.
pub(crate) fn coverage() -> Coverage {
    let mut cov = Coverage {
        captures: vec!["web".into(), "client".into(), "db".into()],
        ..Default::default()
    };
    let mut server = FileCoverage::default();
    server.lines.insert(2, line(3, &[1, 1, 1])); // all machines
    server.lines.insert(3, line(2, &[2, 0, 0])); // only web
    let mut l4 = line(2, &[2, 0, 0]);
    l4.branches = vec![
        branch(0, 0, Some(2), &[Some(2), None, None]),
        branch(0, 1, Some(0), &[Some(0), None, None]),
    ];
    server.lines.insert(4, l4); // partly hit, only web
    server.lines.insert(5, line(0, &[0, 0, 0])); // missed
    let mut l6 = line(4, &[1, 3, 0]);
    l6.unexecuted_block = true;
    server.lines.insert(6, l6); // partly hit (block)
    server.lines.insert(8, line(1, &[0, 0, 1])); // only db
    server.functions = vec![
        function("main", "main", 1, 9, &[1, 1, 1]),
        function("unused", "unused", 8, 8, &[0, 0, 0]),
    ];
    let mut odd = FileCoverage::default();
    odd.lines.insert(10, line(5, &[5, 0, 0]));
    odd.lines.insert(11, line(0, &[0, 0, 0]));
    let mut l12 = line(7, &[3, 4, 0]);
    l12.branches = vec![
        branch(0, 0, Some(7), &[Some(3), Some(4), None]),
        branch(0, 1, None, &[None, None, None]),
        branch(1, 0, Some(1), &[Some(1), Some(0), None]),
    ];
    odd.lines.insert(12, l12);
    odd.functions = vec![function(
        "_ZN3net3getIiEERT_v",
        "net::get<int>&() <&>",
        10,
        12,
        &[5, 0, 0],
    )];
    let mut util = FileCoverage::default();
    util.lines.insert(1, line(0, &[0, 0, 0]));
    util.lines.insert(2, line(0, &[0, 0, 0]));
    cov.files.insert("/proj/src/server.c".into(), server);
    cov.files
        .insert("/proj/src/net/<odd & \"name\">.cc".into(), odd);
    cov.files.insert("/proj/include/util.h".into(), util);
    cov
}
