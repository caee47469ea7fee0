"""Model zoo: variant generation, profiling, evaluators and the zoo manifest."""
