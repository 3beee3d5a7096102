"""`python -m startgate`: the same command line as the `startgate` console script."""

from startgate.cli import main

if __name__ == "__main__":
    main()
