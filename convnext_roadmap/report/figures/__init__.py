"""The figures of a report, each drawn from the summary frame: roadmap (Figure 2), scatter, curves, budget;
style holds what they share."""
