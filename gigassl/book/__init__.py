"""The companion that builds the book (the second layer): the run plan and its runner, the pages' functions, the
paper's numbers and the verdicts, the pictures. The method (:mod:`gigassl`) never imports it.
"""
