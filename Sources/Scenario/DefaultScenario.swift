// The built-in scenario: one realistic x86-64 process (a Python interpreter)
// and a forked child, exercising most entry kinds while populating only
// about 10 MiB, so it builds instantly. It is what `ptwalk` and the
// benchmark use when given no scenario file.

import Foundation

public enum DefaultScenario {
    /// pid 1000 "python3": python3.11 and libc file mappings (4 each, with
    /// file offsets), a [heap] with one PMD THP plus 4K faults, an arena of
    /// 64K mTHPs (order 4), an anon region partly swapped out, a thread stack
    /// with a guard page (MADV_GUARD_INSTALL) at its low end, a /dev/shm
    /// segment partly faulted, a 2M hugetlb mapping, [vvar] (PFN map),
    /// [vdso] and [stack]; then it forks pid 1001, which writes to a few
    /// inherited pages (breaking COW).
    public static let json = #"""
    {
      "version": 1,
      "architecture": "x86_64",
      "levels": 4,
      "numaNodes": 2,
      "memoryBudget": "64M",
      "processes": [
        {
          "pid": 1000,
          "name": "python3",
          "vmas": [
            { "start": "0x555555554000", "end": "0x5555555c4000", "perms": "r--p", "kind": "file",
              "file": { "path": "/usr/bin/python3.11", "dev": "fd:01", "inode": 1839474, "offset": "0x0" } },
            { "start": "0x5555555c4000", "end": "0x555555824000", "perms": "r-xp", "kind": "file",
              "file": { "path": "/usr/bin/python3.11", "dev": "fd:01", "inode": 1839474, "offset": "0x70000" } },
            { "start": "0x555555824000", "end": "0x555555a95000", "perms": "r--p", "kind": "file",
              "file": { "path": "/usr/bin/python3.11", "dev": "fd:01", "inode": 1839474, "offset": "0x2d0000" } },
            { "start": "0x555555a95000", "end": "0x555555af4000", "perms": "rw-p", "kind": "file",
              "file": { "path": "/usr/bin/python3.11", "dev": "fd:01", "inode": 1839474, "offset": "0x540000" } },
            { "start": "0x555555b3e000", "end": "0x555556000000", "perms": "rw-p", "kind": "anon", "name": "[heap]" },

            { "start": "0x7fffe0000000", "size": "4M", "perms": "rw-p", "kind": "hugetlb", "hugePageSize": "2M" },
            { "start": "0x7ffff5c00000", "size": "2M", "perms": "rw-p", "kind": "anon" },
            { "start": "0x7ffff6000000", "size": "4M", "perms": "rw-p", "kind": "anon", "policy": "interleave:0-1" },
            { "start": "0x7ffff6600000", "size": "8M", "perms": "rw-p", "kind": "anon", "flags": ["nohugepage"] },
            { "start": "0x7ffff7a00000", "size": "1M", "perms": "rw-s", "kind": "shmem",
              "file": { "path": "/dev/shm/psm_5f3a2c1e", "dev": "00:1a", "inode": 7, "offset": 0 } },

            { "start": "0x7ffff7c00000", "end": "0x7ffff7c28000", "perms": "r--p", "kind": "file",
              "file": { "path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "dev": "fd:01", "inode": 1835131, "offset": "0x0" } },
            { "start": "0x7ffff7c28000", "end": "0x7ffff7db0000", "perms": "r-xp", "kind": "file",
              "file": { "path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "dev": "fd:01", "inode": 1835131, "offset": "0x28000" } },
            { "start": "0x7ffff7db0000", "end": "0x7ffff7dff000", "perms": "r--p", "kind": "file",
              "file": { "path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "dev": "fd:01", "inode": 1835131, "offset": "0x1b0000" } },
            { "start": "0x7ffff7dff000", "end": "0x7ffff7e05000", "perms": "rw-p", "kind": "file",
              "file": { "path": "/usr/lib/x86_64-linux-gnu/libc.so.6", "dev": "fd:01", "inode": 1835131, "offset": "0x1fe000" } },
            { "start": "0x7ffff7e05000", "end": "0x7ffff7e12000", "perms": "rw-p", "kind": "anon" },

            { "start": "0x7ffff7fc0000", "size": "16K", "perms": "r--p", "kind": "pfnmap", "name": "[vvar]",
              "flags": ["io", "dontexpand", "dontdump"] },
            { "start": "0x7ffff7fc4000", "size": "8K", "perms": "r-xp", "kind": "anon", "name": "[vdso]",
              "flags": ["dontexpand"] },
            { "start": "0x7ffffffde000", "end": "0x7ffffffff000", "perms": "rw-p", "kind": "anon", "name": "[stack]",
              "flags": ["growsdown"] }
          ],
          "ops": [
            { "op": "fault", "start": "0x555555554000", "size": "128K" },
            { "op": "fault", "start": "0x5555555c4000", "size": "512K" },
            { "op": "fault", "start": "0x555555824000", "size": "64K" },
            { "op": "fault", "start": "0x555555a95000", "size": "64K", "write": true },
            { "op": "fault", "start": "0x7ffff7c00000", "size": "64K" },
            { "op": "fault", "start": "0x7ffff7c28000", "size": "256K" },
            { "op": "fault", "start": "0x7ffff7db0000", "size": "32K" },
            { "op": "fault", "start": "0x7ffff7dff000", "size": "24K", "write": true },
            { "op": "fault", "start": "0x7ffff7e05000", "size": "16K", "write": true },

            { "op": "fault", "start": "0x555555b3e000", "size": "128K", "write": true },
            { "op": "thp", "start": "0x555555c00000", "size": "2M" },
            { "op": "fault", "start": "0x555555e00000", "size": "64K", "write": true },
            { "op": "migrate", "start": "0x555555e00000", "size": "64K", "node": 1 },

            { "op": "mthp", "start": "0x7ffff6000000", "size": "1M", "order": 4 },

            { "op": "fault", "start": "0x7ffff5c00000", "size": "1M", "write": true },
            { "op": "swapout", "start": "0x7ffff5c40000", "size": "256K" },

            { "op": "guard_install", "start": "0x7ffff6600000", "size": "4K" },
            { "op": "fault", "start": "0x7ffff6df0000", "size": "64K", "write": true },

            { "op": "fault", "start": "0x7ffff7a00000", "size": "256K", "write": true },
            { "op": "hugetlb", "start": "0x7fffe0000000", "size": "4M" },
            { "op": "remap_pfn", "start": "0x7ffff7fc0000", "size": "16K", "pfn": "0x1c3a0" },
            { "op": "fault", "start": "0x7fffffffb000", "size": "16K", "write": true },

            { "op": "fork", "child": 1001 }
          ]
        },
        {
          "pid": 1001,
          "name": "python3",
          "parent": 1000,
          "ops": [
            { "op": "fault", "start": "0x555555b3e000", "size": "16K", "write": true },
            { "op": "fault", "start": "0x555555c00000", "size": "4K", "write": true },
            { "op": "fault", "start": "0x7ffff5c00000", "size": "8K", "write": true },
            { "op": "fault", "start": "0x7fffffffe000", "size": "4K", "write": true }
          ]
        }
      ]
    }
    """#

    /// The default scenario, parsed and validated.
    public static func load() throws(ScenarioError) -> ScenarioDocument {
        try ScenarioDocument.parse(json)
    }
}
