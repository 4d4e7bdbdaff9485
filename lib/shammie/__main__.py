"""`python -m shammie ...`: see shammie.runner; `python -m shammie bench ...`: see shammie.bench."""

import sys


def _main() -> int:
    if sys.argv[1:2] == ["bench"]:  # benchmarks: kept, summarized and compared by shammie.bench
        from .bench import main as bench_main

        return bench_main(sys.argv[2:])
    from .runner import main

    return main()


sys.exit(_main())
