from ops.devstack.cli import main

main()
