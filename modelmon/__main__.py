from modelmon.app.cli import main

main()
