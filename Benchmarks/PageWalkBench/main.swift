import MemoryModel

print("pagewalk-bench: populate benchmark")
