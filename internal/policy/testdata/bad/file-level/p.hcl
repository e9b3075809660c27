memory = "2GiB"

polcy "default" {
}

rules {
}

policy {
}

policy "Large X" {
}

policy "a" "b" {
}
