"""One full CIFAR-10 epoch (train 50,000 images + test 10,000), the reference's way and vit_nbdev's way, back to back.

    VIT_DATA_DIR=/path/to/cifar10 python bench/epoch.py [--device cpu] [--threads N] [--skip-data]

- reference: the seed's per-head model (`use_faster_attention=False`) computing every token of every block as the
  seed does (`AllTokens` from `throughput.py`), fed by a torchvision `DataLoader` with 2 workers
  that decodes every image through PIL with the seed's transforms (ToTensor, Resize, RandomHorizontalFlip,
  RandomResizedCrop, Normalize); `loss.item()` every step; evaluation under `torch.no_grad()`. torchvision's `CIFAR10`
  class refuses files whose MD5 differs from the official archive, so a small `Dataset` reads the pickles instead
  (the per-image work, PIL conversion and transforms, is the reference's).
- vit_nbdev: `prepare_data` + `Trainer.train` for one epoch, as `vit_train` runs it (fast attention, batch-wise tensor
  augmentation, experiment files committed at the end of the epoch).

Data loading from disk happens before the clock starts for both. Prints seconds and the ratio; asserts nothing.
"""
import argparse, os, platform, tempfile, time
import torch
from torch import nn, optim
from torch.utils.data import Dataset, DataLoader
import torchvision.transforms as transforms
from PIL import Image
from vit_nbdev.model import ViTConfig, ViTForClassification
from vit_nbdev.data import load_cifar10, prepare_data
from vit_nbdev.train import Trainer
from throughput import AllTokens   # bench/ is on the path when this script runs


class PickleCIFAR10(Dataset):
    "CIFAR-10 from the python pickles, one PIL image at a time, as torchvision's `CIFAR10` serves it."
    def __init__(self, data_dir, train, transform):
        images, labels, self.classes = load_cifar10(data_dir, train=train)
        self.data = images.permute(0, 2, 3, 1).numpy()   # (N, 32, 32, 3) uint8, HWC as torchvision keeps it
        self.targets, self.transform = labels.tolist(), transform
    def __len__(self): return len(self.data)
    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_loaders(data_dir, batch_size=256, num_workers=2):
    "The seed's `prepare_data`: PIL transforms in 2 worker processes."
    train_tf = transforms.Compose([
        transforms.ToTensor(), transforms.Resize((32, 32)), transforms.RandomHorizontalFlip(p=0.5),
        transforms.RandomResizedCrop((32, 32), scale=(0.8, 1.0), ratio=(0.75, 1.3333333333333333), interpolation=2),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Resize((32, 32)),
                                  transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train = DataLoader(PickleCIFAR10(data_dir, True, train_tf), batch_size=batch_size, shuffle=True,
                       num_workers=num_workers)
    test = DataLoader(PickleCIFAR10(data_dir, False, test_tf), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers)
    return train, test


def reference_epoch(model, optimizer, loss_fn, trainloader, testloader, device):
    "The seed's `Trainer.train_epoch` + `Trainer.evaluate`; returns (train loss, test loss, accuracy)."
    model.train(); total_loss = 0
    for images, labels in trainloader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(images)[0], labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(images)
    train_loss = total_loss / len(trainloader.dataset)
    model.eval(); total_loss = correct = 0
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            logits, _ = model(images)
            total_loss += loss_fn(logits, labels).item() * len(images)
            correct += torch.sum(torch.argmax(logits, dim=1) == labels).item()
    return train_loss, total_loss / len(testloader.dataset), correct / len(testloader.dataset)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-dir', default=None)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None, help="vit_nbdev's CPU threads (default: vit_train's default)")
    p.add_argument('--skip-data', action='store_true', help='do not time the data pipelines on their own')
    a = p.parse_args()
    device = torch.device(a.device)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"torch {torch.__version__}; device {device}")

    # -- the reference's epoch (PyTorch's default threads, as the seed runs)
    rtrain, rtest = reference_loaders(a.data_dir)
    if not a.skip_data:
        t = time.perf_counter()
        for _ in rtrain: pass
        print(f"reference data only (2 workers, PIL): {time.perf_counter() - t:.1f} s per epoch of training data")
    torch.manual_seed(0)
    model = AllTokens(ViTForClassification(ViTConfig(use_faster_attention=False))).to(device)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    t = time.perf_counter()
    r = reference_epoch(model, opt, nn.CrossEntropyLoss(), rtrain, rtest, device)
    ref = time.perf_counter() - t
    print(f"reference epoch ({torch.get_num_threads()} threads): {ref:.1f} s  "
          f"(train loss {r[0]:.4f}, test loss {r[1]:.4f}, accuracy {100 * r[2]:.2f}%)")

    # -- vit_nbdev's epoch
    if a.threads: torch.set_num_threads(a.threads)
    trainloader, testloader = prepare_data(256, a.data_dir, device=device)
    if not a.skip_data:
        t = time.perf_counter()
        for _ in trainloader: pass
        print(f"vit_nbdev data only (tensor ops): {time.perf_counter() - t:.2f} s per epoch of training data")
    torch.manual_seed(0)
    model = ViTForClassification(ViTConfig()).to(device)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, opt, nn.CrossEntropyLoss(), 'bench', device, out_dir=out, progress=False,
                          verbose=False)
        t = time.perf_counter()
        m = trainer.train(trainloader, testloader, 1)
        ours = time.perf_counter() - t
    print(f"vit_nbdev epoch ({torch.get_num_threads()} threads): {ours:.1f} s  (train loss {m['train_losses'][0]:.4f}, "
          f"test loss {m['test_losses'][0]:.4f}, accuracy {100 * m['accuracies'][0]:.2f}%)")
    print(f"vit_nbdev / reference epoch time: {ours / ref:.2f}x  (target <= 0.6x)")


if __name__ == '__main__':
    main()
