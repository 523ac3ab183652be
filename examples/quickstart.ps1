# The main job on the bundled files only: LoRA-fine-tune the bundled stories260K (a real pretrained 260K-parameter
# Llama) as a sentiment classifier on SST-2 (GLUE), and show the validation loss and accuracy before and after.
# A few minutes on a laptop CPU. Run it with `./loraps examples/quickstart.ps1` (or `pwsh` with the module imported).
param(
    [int] $MaxSteps = 600,
    [TimeSpan] $MaxTime = '00:04:00',
    [string] $OutputPath = 'out/quickstart/sst2',
    [long] $Seed = 1
)

# 1. The model writes a story (greedy decoding; stories260K starts each new story with <s>, id 1, which ends this one).
$storyteller = Import-LoraModel                  # no -Path: the bundled models/stories260K
$storyteller | Out-Default            # each result in its own table (Out-Default formats types separately)
(Invoke-LoraGenerate -Model $storyteller -Prompt 'Once upon a time' -MaxNewTokens 60 -StopTokenId 1).Text
Remove-LoraModel -Model $storyteller

# 2. The same body with a new 2-way classification head, and a LoRA on every linear layer. As in PEFT's SEQ_CLS task
#    the head trains (and is saved) with the adapter.
$model = Import-LoraModel -Head SequenceClassification -NumLabels 2 -Seed $Seed   # the new head: N(0, 0.02), seeded
New-LoraConfig -Rank 8 -Alpha 16 -TargetModules all-linear | Add-LoraAdapter -Model $model -Seed $Seed | Out-Null

# SST-2 (data/glue/sst2): 60,614 training phrases; test.tsv is GLUE's labelled dev set (872 sentences), which the
# run never trains on and scores before the first step and after the last.
$train = Import-LoraDataset -Path data/glue/sst2/train.tsv
$dev = Import-LoraDataset -Path data/glue/sst2/test.tsv
$positive = @($dev.Examples | Where-Object { $_.Label -eq 1 }).Count
$majority = [Math]::Max($positive, $dev.Count - $positive) / $dev.Count

$run = Start-LoraFinetune -Model $model -Dataset $train -ValidationDataset $dev -OutputPath $OutputPath -Force `
    -MaxSteps $MaxSteps -MaxTime $MaxTime -BatchSize 16 -MicroBatchSize 16 -LearningRate 3e-3 -WarmupSteps 20 `
    -MaxSeqLength 64 -GroupByLength -EvalInterval 0 -InitialValidation -Seed $Seed
$run | Out-Default

# 3. Before and after, on the 872 held-out sentences.
$row = { param($name, $metrics, $accuracy) [pscustomobject]@{
    Model          = $name
    ValidationLoss = if ($metrics) { '{0:F4}' -f $metrics.Loss }
    Accuracy       = '{0:P1}' -f $accuracy
} }
@(
    & $row 'majority class' $null $majority
    & $row 'untrained (before)' $run.InitialValidation $run.InitialValidation.Accuracy
    & $row "LoRA, $($run.Steps) steps (after)" $run.FinalValidation $run.FinalValidation.Accuracy
) | Out-Default
"The adapter (with the classification head) is in $($run.AdapterPath)"

Remove-LoraModel -Model $model
