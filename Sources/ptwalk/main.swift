import MemoryModel
import Scenario

// The command-line tool grows with the other modules (see README).
print("ptwalk: commands arrive with the walker and producer issues")
