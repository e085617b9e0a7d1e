from modelmon.cli import main

main()
