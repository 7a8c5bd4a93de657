print("mmpolicy")
