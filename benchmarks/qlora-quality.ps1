# QLoRA quality check: the fine-tune of examples/finetune.ps1 (stories260K, two-digit addition, rank 8, 400 steps,
# seed 1) on a full-precision base and on an nf4-dq base, compared by validation loss. The issue's goal: nf4-dq within
# 2% (relative) of the full-precision run. Run: ./loraps benchmarks/qlora-quality.ps1
# Writes benchmarks/results/qlora-quality.json. bf16 runs are optional (-Configurations): this CPU has no AVX-512 BF16.
param(
    [int] $MaxSteps = 400,
    [string] $OutputPath = "out/qlora-quality",
    # Comma-separated (a script run with -File gets one string): quantization/precision, or a precision alone.
    [string] $Configurations = 'fp32,nf4-dq/fp32,bf16,nf4-dq/bf16',
    [string] $ResultPath = "benchmarks/results/qlora-quality.json"
)

$data = Import-LoraDataset -Path data/arithmetic/two_digit_addition.jsonl -PromptProperty context -ResponseProperty completion -Format Instruction
$rows = foreach ($configuration in $Configurations -split ',') {
    # 'nf4-dq/bf16' = quantization/compute precision; 'fp32' = no quantization.
    $parts = $configuration -split '/'
    if ($parts.Count -eq 2) {
        $model = Import-LoraModel -Precision $parts[1] -Quantize $parts[0]
    } else {
        $model = Import-LoraModel -Precision $parts[0]
    }
    New-LoraConfig -Rank 8 -Alpha 16 -TargetModules all-linear | Add-LoraAdapter -Model $model -Seed 1 | Out-Null
    $run = Start-LoraFinetune -Model $model -Dataset $data -OutputPath "$OutputPath/$($configuration -replace '/', '-')" -Force `
        -MaxSteps $MaxSteps -BatchSize 16 -MicroBatchSize 16 -LearningRate 3e-3 -WarmupSteps 20 -PromptStyle plain -MaskPrompt `
        -ValidationFraction 0.05 -EvalInterval 50
    [pscustomobject]@{
        Configuration       = $configuration
        Quantization        = $model.QuantizationFormat
        BaseBitsPerParameter = $model.BaseBitsPerParameter
        FinalTrainLoss      = $run.FinalTrainLoss
        FinalValidationLoss = $run.FinalValidationLoss
        BestValidationLoss  = $run.BestValidationLoss
        WallSeconds         = [math]::Round($run.WallTime.TotalSeconds, 1)
    }
    Remove-LoraModel $model
}
$rows
foreach ($pair in @(@('nf4-dq/fp32', 'fp32'), @('nf4-dq/bf16', 'bf16'))) {
    $q = $rows | Where-Object Configuration -eq $pair[0]
    $r = $rows | Where-Object Configuration -eq $pair[1]
    if ($q -and $r) {
        '{0} vs {1}: final validation loss {2:F4} vs {3:F4}, relative difference {4:P2}' -f $pair[0], $pair[1],
            $q.FinalValidationLoss, $r.FinalValidationLoss, (($q.FinalValidationLoss - $r.FinalValidationLoss) / $r.FinalValidationLoss)
    }
}
if ($ResultPath) { ConvertTo-Json @($rows) | Set-Content -Path $ResultPath }
