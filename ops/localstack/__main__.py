from ops.localstack.cli import main

main()
