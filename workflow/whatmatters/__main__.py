from whatmatters.cli import main

main()
