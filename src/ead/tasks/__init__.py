"""Tasks: where prompts come from and how responses are graded."""

from ead.tasks.base import Grade, Grader, Problem, Task

__all__ = ["Grade", "Grader", "Problem", "Task"]
