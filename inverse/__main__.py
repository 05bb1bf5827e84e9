from inverse.cli import main

main()
