# Base vs fine-tuned in one table: a short LoRA fine-tune of the bundled stories260K on two-digit addition, then
# Invoke-LoraEval scores the base model and the adapter on the same loaded weights, on lm-eval's arithmetic_2da
# (greedy exact match) and two BLiMP paradigms (grammatical vs ungrammatical sentence). Run: ./loraps examples/eval.ps1
param(
    [int] $MaxSteps = 400,
    [int] $Limit = 200,
    [string] $OutputPath = "out/eval"
)

$model = Import-LoraModel
New-LoraConfig -Rank 8 -Alpha 16 -TargetModules all-linear | Add-LoraAdapter -Model $model -Name arith -Seed 1 | Out-Null

# arithmetic_2da scores the first $Limit records of two_digit_addition.jsonl; train only on the others (held out).
$lines = Get-Content data/arithmetic/two_digit_addition.jsonl
New-Item -ItemType Directory -Force -Path $OutputPath | Out-Null
$lines[$Limit..($lines.Count - 1)] | Set-Content -Path "$OutputPath/train.jsonl"
$data = Import-LoraDataset -Path "$OutputPath/train.jsonl" -PromptProperty context -ResponseProperty completion -Format Instruction
Start-LoraFinetune -Model $model -Dataset $data -OutputPath "$OutputPath/run" -Force -MaxSteps $MaxSteps `
    -BatchSize 16 -MicroBatchSize 16 -LearningRate 3e-3 -WarmupSteps 20 -PromptStyle plain -MaskPrompt | Out-Null

# One pipeline, two models: the base (adapters disabled) and the adapter 'arith'; lm-eval JSON files beside the table.
Invoke-LoraEval -Model $model -Adapter arith -IncludeBase -Task arithmetic_2da, 'blimp_anaphor*' -Limit $Limit `
    -OutFile "$OutputPath/results.json" -Force | Format-Table
