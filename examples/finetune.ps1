# A first LoRA fine-tune of the bundled stories260K on GPT-3's two-digit addition (data/arithmetic), about a minute on
# a 2-core CPU. At this budget the model learns the answer's form (a number of the right size, then stop) but not the
# sums: held-out exact match stays at 0%. examples/quickstart.ps1 is the task it measurably learns (SST-2).
# Run: ./loraps examples/finetune.ps1
param(
    [int] $MaxSteps = 400,
    [string] $OutputPath = "out/finetune/two-digit-addition"
)

$model = Import-LoraModel
New-LoraConfig -Rank 8 -Alpha 16 -TargetModules all-linear | Add-LoraAdapter -Model $model -Seed 1

# lm-eval's arithmetic records are {context, completion}; train on "context → completion" with the plain template.
$data = Import-LoraDataset -Path data/arithmetic/two_digit_addition.jsonl -PromptProperty context -ResponseProperty completion -Format Instruction

$question = "`n`nQ: What is 23 plus 45?`n`nA:"
'before: ' + (Invoke-LoraGenerate -Model $model -Prompt $question -MaxNewTokens 4 -StopSequence "`n").Completion

$result = Start-LoraFinetune -Model $model -Dataset $data -OutputPath $OutputPath -Force -MaxSteps $MaxSteps `
    -BatchSize 16 -MicroBatchSize 16 -LearningRate 3e-3 -WarmupSteps 20 -PromptStyle plain -MaskPrompt -ValidationFraction 0.05 -EvalInterval 50
$result

'after:  ' + (Invoke-LoraGenerate -Model $model -Prompt $question -MaxNewTokens 4 -StopSequence "`n").Completion
